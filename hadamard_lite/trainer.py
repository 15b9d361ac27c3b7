"""A small trainer for GLUE classification and regression, readable in one sitting::

    trainer = Trainer(model, tokenizer, train, dev, TrainConfig(lr=3e-3, epochs=3))
    result = trainer.fit()          # history per epoch, best dev metric, samples/s

It trains whatever has ``requires_grad`` (see ``freeze_for_stage``), on CUDA, Apple MPS or the
CPU. ``precision="auto"`` picks bf16 autocast on GPUs that have it, fp16 with a gradient scaler on
those that do not (Colab's T4), and float32 elsewhere, CPUs included (``precision="bf16"`` asks for
bf16 autocast on a CPU); master weights stay float32 in every case. Under ``torchrun --nproc_per_node=N`` it runs as N
DistributedDataParallel processes, each on its share of every epoch's batches.
"""
import math
import os
import time
import warnings
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm.auto import tqdm

from .adapter_files import atomic_write
from .data import GlueSplit, batches
from .inference import logits
from .metrics import glue_metrics


@dataclass
class TrainConfig:
    epochs: int = 3
    lr: float = 3e-3
    batch_size: int = 32
    eval_batch_size: int = 128
    max_length: int = 128
    warmup_ratio: float = 0.06  # share of all steps spent ramping the learning rate up from 0
    weight_decay: float = 0.01  # only on matrices: adapter scales, biases and LayerNorms must stay near 1 or 0
    max_grad_norm: float = 1.0
    grad_accum: int = 1  # optimizer step every this many batches
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # "auto", "fp32", "bf16" or "fp16" (see precision_for)
    keep_best: bool = True  # end with the weights of the best epoch on the dev set
    checkpoint_dir: str | None = None  # write checkpoint.pt there after every epoch
    resume_from: str | None = None  # a checkpoint.pt to continue from
    progress: bool = True


def pick_device(device: str = "auto") -> torch.device:
    """``device`` itself, checked, or for "auto" the best there is: CUDA, then Apple MPS, then the CPU."""
    if device != "auto":
        try:
            chosen = torch.device(device)
        except RuntimeError:
            raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but this machine has no usable CUDA GPU; use auto or cpu")
        if chosen.type == "cuda" and (chosen.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} asked for, but this machine has {torch.cuda.device_count()} "
                             f"CUDA GPU(s); use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ValueError(f"device {device!r} asked for, but Apple MPS is not available here; use auto or cpu")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def precision_for(device: torch.device, precision: str = "auto") -> str:
    """The precision a run uses: ``precision`` itself unless it is "auto"; then bf16 on GPUs
    that have it, fp16 (with a gradient scaler) on older GPUs, else fp32. CPUs keep fp32 even with
    native bf16: bf16's scores were never measured on such a CPU, and issue 8's rule makes bf16 a CPU
    default only once they are within seed noise of fp32 (README, "bf16 on the CPU"). MPS keeps fp32
    too: its autocast support varies by macOS version."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(f"fp16 needs a CUDA GPU (this run is on {device.type}); use bf16 or fp32")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        # Native bf16 from Ampere (compute capability 8) on; is_bf16_supported() also says yes for
        # older GPUs that only emulate it (slowly), such as Colab's T4, which want fp16 and a scaler.
        return "bf16" if torch.cuda.get_device_capability(device)[0] >= 8 else "fp16"
    return "fp32"


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Linear warm-up to ``base_lr``, then linear decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    return base_lr * max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))


def _distributed() -> tuple:
    """``(rank, world size)``; starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def constant_prediction(predictions: list, data: GlueSplit) -> str | None:
    """What every prediction is, when they are all the same although the labels vary (the model
    ignores its input: a too high learning rate, or too little training); else None."""
    if data.task.is_regression:
        spread, label_spread = max(predictions) - min(predictions), max(data.labels) - min(data.labels)
        if label_spread > 0 and spread <= 1e-3 * label_spread:
            return f"the score {sum(predictions) / len(predictions):.3f}"
        return None
    if len(set(predictions)) == 1 and len(set(data.labels)) > 1:
        return f"the label {data.task.labels[predictions[0]]!r}"
    return None


# Settings that shape the run: a checkpoint only continues a run that had the same ones.
RESUME_MUST_MATCH = ("epochs", "lr", "batch_size", "max_length", "warmup_ratio", "weight_decay", "max_grad_norm",
                     "grad_accum", "seed", "keep_best")


class Trainer:
    def __init__(self, model: nn.Module, tokenizer, train_data: GlueSplit, eval_data: GlueSplit | None = None,
                 config: TrainConfig | None = None, callbacks=()):
        self.config = config or TrainConfig()
        self.tokenizer, self.train_data, self.eval_data = tokenizer, train_data, eval_data
        self.callbacks = list(callbacks)  # each called as callback(trainer, epoch_record) after every epoch
        self.rank, self.world = _distributed()
        self.device = pick_device(self.config.device)
        if self.world > 1 and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        self.precision = precision_for(self.device, self.config.precision)
        self._check_inputs(model)
        self.model = model.to(self.device)
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if not self.trainable:
            raise ValueError("nothing to train: every parameter has requires_grad=False; call freeze_for_stage first")
        half = [n for n, p in self.trainable.items() if p.dtype != torch.float32]
        if half:
            raise ValueError(f"refusing to train half-precision master weights ({half[0]} is "
                             f"{self.trainable[half[0]].dtype}): load the model in float32; "
                             "mixed precision is applied by autocast")
        # Weight decay pulls towards 0: right for matrices, wrong for scales that start at 1.
        decay = [p for p in self.trainable.values() if p.ndim >= 2]
        no_decay = [p for p in self.trainable.values() if p.ndim < 2]
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.config.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0}], lr=self.config.lr)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" else None
        self.wrapped = (nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
                        if self.world > 1 else model)
        self.step, self.epoch = 0, 0
        self.history, self.step_losses = [], []
        self.best_metric, self.best_state, self.best_epoch = -math.inf, None, 0
        torch.manual_seed(self.config.seed)  # dropout; a resumed run restores the saved RNG state instead
        if self.config.resume_from:
            self.load_checkpoint(self.config.resume_from)

    # ------------------------------------------------------------------ helpers
    def _check_inputs(self, model: nn.Module) -> None:
        """One-line errors for settings and data that would otherwise fail deep inside torch."""
        cfg = self.config
        for name in ("batch_size", "eval_batch_size", "grad_accum", "max_length"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"TrainConfig.{name} is {getattr(cfg, name)}; it must be at least 1")
        if cfg.epochs < 0:
            raise ValueError(f"TrainConfig.epochs is {cfg.epochs}; give 0 or more")
        for label, data in (("training", self.train_data), ("evaluation", self.eval_data)):
            if data is not None and len(data) == 0:
                raise ValueError(f"the {label} data is empty: load a split with examples (check --limit or the data folder)")
        heads = getattr(getattr(model, "config", None), "num_labels", None)
        task = self.train_data.task
        if heads is not None and heads != task.num_labels:
            raise ValueError(f"the model has {heads} output(s) but {task.name} needs {task.num_labels}: load it with "
                             f"load_model(num_labels={task.num_labels})")

    def _autocast(self):
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def _epoch_batches(self, epoch: int) -> list:
        all_batches = list(batches(self.train_data, self.tokenizer, self.config.batch_size, self.config.max_length,
                                   shuffle=True, seed=self.config.seed, epoch=epoch))
        # Every process gets the same number of batches, or DDP would wait forever on one.
        usable = len(all_batches) - len(all_batches) % self.world
        return all_batches[self.rank:usable:self.world]

    def _steps_per_epoch(self) -> int:
        n = math.ceil(len(self.train_data) / self.config.batch_size) // self.world
        return max(1, math.ceil(n / self.config.grad_accum))  # the last partial group steps too

    def _check_losses(self, losses: list, epoch: int) -> None:
        """Stop on a NaN or infinite loss instead of training on garbage; show the latest loss."""
        recent = torch.stack(losses[-20:]).float().cpu()
        if not torch.isfinite(recent).all():
            raise FloatingPointError(
                f"the loss became {recent[~torch.isfinite(recent)][0].item()} in epoch {epoch + 1}, "
                f"near step {self.step}: training stopped. Lower the learning rate "
                f"(now {self.config.lr}) or check the data and labels.")
        self._bar.set_postfix(loss=f"{recent[-1].item():.4f}", refresh=False)

    def _trainable_state(self) -> dict:
        return {n: p.detach().clone() for n, p in self.trainable.items()}

    # ------------------------------------------------------------------ evaluation
    def predict(self, data: GlueSplit):
        """Predictions for every example of ``data``, in its order (class ids, or scores for regression)."""
        values = logits(self.model, self.tokenizer, data, self.config.eval_batch_size, self.config.max_length,
                        self.precision)
        return (values.squeeze(-1) if data.task.is_regression else values.argmax(-1)).tolist()

    def evaluate(self, data: GlueSplit | None = None) -> dict:
        data = data if data is not None else self.eval_data
        if data is None:
            raise ValueError("nothing to evaluate: pass a dev split to evaluate(), or eval_data to Trainer")
        return glue_metrics(data.task.name, self.predict(data), data.labels)

    # ------------------------------------------------------------------ training
    def fit(self) -> dict:
        cfg = self.config
        total_steps = self._steps_per_epoch() * cfg.epochs
        warmup_steps = max(1, int(cfg.warmup_ratio * total_steps))
        samples, started, eval_seconds, start_epoch = 0, time.perf_counter(), 0.0, self.epoch
        for epoch in range(start_epoch, cfg.epochs):  # a resumed run starts after its last checkpoint
            losses, epoch_samples = self._train_epoch(epoch, total_steps, warmup_steps)
            samples += epoch_samples
            self.step_losses += losses
            record = {"epoch": epoch + 1, "step": self.step, "train_loss": sum(losses) / max(1, len(losses)),
                      "lr": self.optimizer.param_groups[0]["lr"]}
            if self.eval_data is not None:
                eval_started = time.perf_counter()
                record.update(self._evaluate_epoch(epoch))
                eval_seconds += time.perf_counter() - eval_started
            self.history.append(record)
            self.epoch = epoch + 1
            if cfg.checkpoint_dir and self.rank == 0:
                self.save_checkpoint(Path(cfg.checkpoint_dir) / "checkpoint.pt")
            for callback in self.callbacks:
                callback(self, record)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - started - eval_seconds  # training alone, batching included
        if cfg.keep_best and self.best_state is not None:
            with torch.no_grad():
                for n, value in self.best_state.items():
                    self.trainable[n].copy_(value)
        self.model.eval()  # ends ready to predict, dropout off, whether or not it evaluated along the way
        collapsed = self._collapse_message()
        if collapsed:
            warnings.warn(collapsed, stacklevel=2)
        return {"history": self.history, "best_metric": self.best_metric, "train_seconds": elapsed,
                "eval_seconds": eval_seconds, "step_losses": self.step_losses,
                "samples_per_second": samples * self.world / elapsed if elapsed else 0.0,
                "device": str(self.device), "precision": self.precision, "collapsed": collapsed,
                "start_epoch": start_epoch}

    def _train_epoch(self, epoch: int, total_steps: int, warmup_steps: int) -> tuple:
        """One pass over this process's batches of ``epoch``: ``(losses, samples)``."""
        cfg = self.config
        self.model.train()
        epoch_batches = self._epoch_batches(epoch)
        self._bar = bar = tqdm(epoch_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                               disable=not cfg.progress or self.rank != 0)
        # Reading a loss makes the CPU wait for the GPU; on a GPU we look every 20 steps so it
        # stays busy (a NaN then costs at most 19 wasted steps), on the CPU after every step.
        check_every = 1 if self.device.type == "cpu" else 20
        losses, samples = [], 0
        for i, batch in enumerate(bar):
            # Gradients of a group of grad_accum batches add up; dividing each loss by the group's
            # size makes them its average. The last group of an epoch can be smaller: its own size.
            group_start = i - i % cfg.grad_accum
            group_size = min(cfg.grad_accum, len(epoch_batches) - group_start)
            batch.pop("index")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with self._autocast():
                loss = self.wrapped(**batch).loss
            scaled = loss / group_size
            (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            losses.append(loss.detach())
            samples += len(batch["labels"])
            if (i + 1) % check_every == 0 or i + 1 == len(epoch_batches):
                self._check_losses(losses, epoch)
            if i + 1 == group_start + group_size:
                self._optimizer_step(total_steps, warmup_steps)
        return [float(x) for x in losses], samples

    def _optimizer_step(self, total_steps: int, warmup_steps: int) -> None:
        """Set this step's learning rate, clip the gradients, step, clear them."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, total_steps, warmup_steps, self.config.lr)
        if self.scaler:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
        torch.nn.utils.clip_grad_norm_(self.trainable.values(), self.config.max_grad_norm)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1

    def _evaluate_epoch(self, epoch: int) -> dict:
        """Dev metrics after ``epoch``; remembers the best weights, and whether every prediction was the same."""
        predictions = self.predict(self.eval_data)
        metrics = glue_metrics(self.eval_data.task.name, predictions, self.eval_data.labels)
        main = next(iter(metrics.values()))
        if main > self.best_metric:
            self.best_metric, self.best_state, self.best_epoch = main, self._trainable_state(), epoch + 1
        return {**{f"eval_{k}": v for k, v in metrics.items()},
                "constant_prediction": constant_prediction(predictions, self.eval_data)}

    def _collapse_message(self) -> str | None:
        """A warning when the weights the run ends with predict one value for every dev example."""
        if not self.history or self.eval_data is None:
            return None
        kept = self.history[self.best_epoch - 1] if self.config.keep_best and self.best_epoch else self.history[-1]
        if not kept.get("constant_prediction"):
            return None
        metric = self.eval_data.task.metric
        return (f"training collapsed to a constant prediction: after epoch {kept['epoch']} every dev example gets "
                f"{kept['constant_prediction']}, so {metric} {kept['eval_' + metric]:.4f} is what a constant guess "
                f"scores, not a result; lower the learning rate (now {self.config.lr:g}), or train longer or on more data")

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, path) -> None:
        """Everything needed to continue exactly: trainable weights, optimizer, step, RNG."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: torch.save({
            "trainable": self._trainable_state(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None, "step": self.step, "epoch": self.epoch,
            "history": self.history, "step_losses": self.step_losses, "best_metric": self.best_metric,
            "best_state": self.best_state, "best_epoch": self.best_epoch, "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "mps_rng": torch.mps.get_rng_state() if self.device.type == "mps" else None,  # dropout on Apple GPUs
            "config": asdict(self.config), "world": self.world,
            "data": [self.train_data.task.name, len(self.train_data)],
        }, tmp))

    def load_checkpoint(self, path) -> None:
        """Continue from ``save_checkpoint``'s file; refuses one written by a run with other settings."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=False)
        except FileNotFoundError:
            raise FileNotFoundError(f"no checkpoint at {path}: nothing to resume; train without resuming") from None
        except Exception as err:  # a truncated or foreign file: pickle, zip and torch errors alike
            raise ValueError(f"{path} is not a readable checkpoint ({type(err).__name__}); "
                             "delete it and train without resuming") from err
        saved, ours = state["config"], asdict(self.config)
        differ = [f"{k}={saved[k]} there, {ours[k]} here" for k in RESUME_MUST_MATCH if k in saved and saved[k] != ours[k]]
        data = [self.train_data.task.name, len(self.train_data)]
        if state.get("data", data) != data:
            differ.append(f"training data {state['data'][0]} with {state['data'][1]} examples there, "
                          f"{data[0]} with {data[1]} here")
        if state.get("world", self.world) != self.world:
            differ.append(f"{state['world']} processes there, {self.world} here")
        if differ:
            raise ValueError(f"checkpoint {path} is from a run with other settings ({'; '.join(differ)}); "
                             "resume with the same settings, or start again without resuming")
        missing = set(self.trainable) ^ set(state["trainable"])
        if missing:
            raise ValueError(f"checkpoint {path} does not match this model's trainable parameters "
                             f"(differing: {sorted(missing)[:3]}); freeze the model the same way as when it was saved")
        with torch.no_grad():
            for n, value in state["trainable"].items():
                self.trainable[n].copy_(value)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.history, self.step_losses = state["history"], state["step_losses"]
        self.best_metric, self.best_state = state["best_metric"], state["best_state"]
        self.best_epoch = state.get("best_epoch", 0)
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if state.get("mps_rng") is not None and self.device.type == "mps":
            torch.mps.set_rng_state(state["mps_rng"])


def train_two_stage(model: nn.Module, tokenizer, train_data: GlueSplit, eval_data: GlueSplit | None = None,
                    head_epochs: int = 1, adapter_epochs: int = 3, head_lr: float = 1e-2, adapter_lr: float = 1e-2,
                    train_head: bool = True, layers=None, config: TrainConfig | None = None,
                    resume: bool = False, parts=("weight", "bias", "layernorm")) -> dict:
    """The paper's recipe: (1) only the classifier head trains; (2) adapters are injected and
    only they and the post-attention LayerNorms train (plus the head if ``train_head``).

    The paper leaves the learning rates and whether the head trains in stage 2 open; the defaults
    were chosen by ``benchmarks/two_stage_sweep.py`` (``results/two_stage_sweep/results.md``): an
    adapter rate of 1e-2 beat 1e-3, 3e-3 and 3e-2, and training the head in stage 2 beat freezing it
    (SST-2 and MRPC subsets on CPU). ``config`` supplies the rest (batch size, seed, device, ...).

    With ``config.checkpoint_dir``, each stage writes its epoch checkpoints to its own subfolder
    (``head/``, ``adapter/``); ``resume=True`` continues from them: a finished stage 1 is restored
    from its last checkpoint instead of trained again, and stage 2 continues after its last epoch.
    ``parts`` narrows stage 2 to some of the adapter's W, its b and the LayerNorm
    (``freeze_for_stage``): the ablation of which parts matter.

    ``config.seed`` fixes dropout and the batch order; the new head's first weights come from
    ``load_model``, so call ``torch.manual_seed(seed)`` before it for a run that repeats exactly (the
    command line does). ``config.keep_best`` (the default) ends with the epoch that scored best on
    ``eval_data``, and ``best_metric`` is that score: chosen on the set it is measured on, so a little
    optimistic. For a number to publish, choose on held-out training data and report the last epoch
    (``keep_best=False``), as ``benchmarks/glue_protocol.py`` does.
    """
    from .adapter import add_hadamard_adapter, adapted_layers, encoder_layers, normalize_layers
    from .freezing import freeze_for_stage

    base = config or TrainConfig()
    present = adapted_layers(model)  # checked before stage 1, so a wrong call costs no training
    if present and layers is not None and normalize_layers(layers, len(encoder_layers(model))) != present:
        raise ValueError(f"layers={layers} asked for, but the model already has adapters on layers {present}; "
                         "call remove_hadamard_adapter(model) first, or leave layers out to train those")
    if base.resume_from:
        raise ValueError("train_two_stage resumes from config.checkpoint_dir with resume=True, not from "
                         "config.resume_from (one file cannot hold both stages)")

    def stage_config(name: str, epochs: int, lr: float) -> TrainConfig:
        folder = Path(base.checkpoint_dir) / name if base.checkpoint_dir else None
        saved = folder / "checkpoint.pt" if folder else None
        return TrainConfig(**{**asdict(base), "epochs": epochs, "lr": lr,
                              "checkpoint_dir": str(folder) if folder else None,
                              "resume_from": str(saved) if resume and saved and saved.is_file() else None})

    def fit(label: str, stage: TrainConfig) -> dict:
        """One stage; its collapse warning says which stage it was."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="training collapsed")
            result = Trainer(model, tokenizer, train_data, eval_data, stage).fit()
        if result["collapsed"]:
            warnings.warn(f"{label}: {result['collapsed']}", stacklevel=3)
        return result

    results = {}
    if head_epochs > 0:
        freeze_for_stage(model, "head")
        results["head"] = fit("stage 1 (head only)", stage_config("head", head_epochs, head_lr))
    if not present:
        add_hadamard_adapter(model, layers)
    freeze_for_stage(model, "adapter", train_head=train_head, parts=parts)
    results["adapter"] = fit("stage 2 (adapters)", stage_config("adapter", adapter_epochs, adapter_lr))
    results["best_metric"] = results["adapter"]["best_metric"]
    return results
