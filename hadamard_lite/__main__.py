"""Command line: the main job::

    python -m hadamard_lite train --task sst2        # two-stage training, prints one result line, saves the adapter
    python -m hadamard_lite train --task sst2 --resume   # continue an interrupted run from its last finished epoch
    python -m hadamard_lite evaluate runs/sst2       # reload the saved adapter and reproduce the dev metric
    python -m hadamard_lite demo                     # inject adapters into the bundled MiniLM and check identity
    python -m hadamard_lite predict --adapter sst2=runs/sst2 --adapter stsb=runs/stsb --input examples.jsonl
                                                     # many tasks on one model (see hadamard_lite/predict.py)

Data come from --data-dir or GLUE_DIR (the classic glue_data/ layout), else the hub, else a
small built-in sample; the result line says which. On a CPU, training uses a 2,000-example
subset unless --limit says otherwise (--limit 0: all); on a GPU, the full training set.

A bad argument or input file ends with one line on stderr, "error: <what was wrong>; <how to
fix it>", and exit status 2 (--debug shows the traceback instead). Exit status 1: the run
finished but its result is not one (training collapsed to a constant prediction, or evaluate
did not reproduce the score); 130: interrupted (train --resume continues).
"""
import argparse
import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

SUMMARY_NAME = "run_summary.json"
CHECKPOINTS = "checkpoints"  # inside the output folder while a run is unfinished
SUMMARY_KEYS = ("task", "metric", "score", "model", "data_dir", "source_option", "eval_limit", "seed", "max_length")


class CommandLineError(Exception):
    """A bad argument, found before any work: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print the usage block and exit; we want one line
        raise CommandLineError(f"{message}; see '{self.prog} --help'")


# What a user can cause: reported as one line. Anything else is a bug and says so.
EXPECTED_ERRORS = (CommandLineError, ValueError, OSError, IndexError, FloatingPointError)


def _percent(part, whole):
    return f"{100 * part / whole:.4f}%"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


# ---------------------------------------------------------------------- checks before any work

def _check_numbers(args) -> None:
    """The arguments that need no model or data, all at once."""
    rules = [("--epochs", args.epochs, args.epochs >= 1, "at least 1 (stage 2's epochs)"),
             ("--head-epochs", args.head_epochs, args.head_epochs >= 0, "0 (no stage 1) or more"),
             ("--batch-size", args.batch_size, args.batch_size >= 1, "at least 1"),
             ("--max-length", args.max_length, args.max_length >= 2, "at least 2 tokens ([CLS] and [SEP])"),
             ("--limit", args.limit, args.limit is None or args.limit >= 0, "0 (all) or a number of examples"),
             ("--eval-limit", args.eval_limit, args.eval_limit is None or args.eval_limit >= 0,
              "0 (all) or a number of examples")]
    for name, value in (("--lr", args.lr), ("--head-lr", args.head_lr)):
        rules.append((name, value, math.isfinite(value) and value > 0, "a finite number above 0, such as 1e-2"))
    for name, value, ok, accepted in rules:
        if not ok:
            raise CommandLineError(f"{name} {value} is not accepted; give {accepted}")
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise CommandLineError(f"--data-dir {args.data_dir} is not a folder; give the glue_data/ folder "
                               "(with SST-2/, MRPC/, ... inside)")


def _check_against_model(args, config) -> None:
    """--max-length and --layers against the model's config (no weights are loaded)."""
    from hadamard_lite.adapter import encoder_layers, normalize_layers
    from hadamard_lite.models import model_from_config

    # RoBERTa-style models number positions from the padding index + 1, so two are not usable.
    offset = 2 if config.model_type in ("roberta", "xlm-roberta", "camembert", "mpnet") else 0
    longest = getattr(config, "max_position_embeddings", None)
    if longest is not None and args.max_length > longest - offset:
        raise CommandLineError(f"--max-length {args.max_length} is longer than this model reads; "
                               f"give at most {longest - offset}")
    layers = encoder_layers(model_from_config(config))  # on the meta device: shapes only, no memory
    if args.layers is not None:
        try:
            normalize_layers(args.layers, len(layers))
        except (IndexError, ValueError) as err:
            raise CommandLineError(f"--layers {' '.join(map(str, args.layers))}: {err}") from None


def _check_output(out: Path) -> None:
    """The output folder can be made and written, checked without creating anything."""
    if out.exists() and not out.is_dir():
        raise CommandLineError(f"--output {out} is a file; give a folder for the adapter")
    existing = next(p for p in [out, *out.absolute().parents] if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise CommandLineError(f"--output {out}: cannot write in {existing}; give a folder you can write to")


# ---------------------------------------------------------------------- the commands

def train(args) -> int:
    import torch
    import hadamard_lite as hl
    from hadamard_lite.adapter_files import atomic_write
    from hadamard_lite.data import SAMPLE_SOURCE, load_glue
    from hadamard_lite.glue_tasks import get_task
    from hadamard_lite.models import base_model_id, load_config, model_path
    from hadamard_lite.trainer import TrainConfig, pick_device, precision_for, train_two_stage

    _check_numbers(args)
    device = pick_device(args.device)
    precision_for(device, args.precision)
    _check_against_model(args, load_config(args.model))
    out = Path(args.output or f"runs/{get_task(args.task).name}")
    _check_output(out)
    checkpoints = out / CHECKPOINTS
    if args.resume and not any((checkpoints / stage / "checkpoint.pt").is_file() for stage in ("head", "adapter")):
        raise CommandLineError(f"--resume: no checkpoint in {checkpoints} (the run stopped before its first epoch "
                               "ended, or wrote to another --output); train without --resume")

    limit = args.limit if args.limit is not None else (None if device.type == "cuda" else 2000)
    limit = limit or None  # 0 means everything
    train_data = load_glue(args.task, "train", args.data_dir, args.source, limit=limit, seed=args.seed)
    dev_data = load_glue(args.task, "dev", args.data_dir, args.source, limit=args.eval_limit or None, seed=args.seed)
    print(f"data: {train_data.source}: {len(train_data):,} train / {len(dev_data):,} dev examples"
          + (f" (a seeded subset of the training set: --limit 0 for all)" if limit else ""), file=sys.stderr)
    tokenizer = hl.load_tokenizer(args.model)
    torch.manual_seed(args.seed)  # the new head's initial weights: the same command trains the same adapter
    model = hl.load_model(args.model, num_labels=train_data.task.num_labels)
    base_total = hl.count_parameters(model)[1]
    config = TrainConfig(batch_size=args.batch_size, max_length=args.max_length, seed=args.seed, device=args.device,
                         precision=args.precision, checkpoint_dir=str(checkpoints))
    started = time.perf_counter()
    try:
        result = train_two_stage(model, tokenizer, train_data, dev_data, head_epochs=args.head_epochs,
                                 adapter_epochs=args.epochs, head_lr=args.head_lr, adapter_lr=args.lr,
                                 train_head=not args.freeze_head, layers=args.layers, config=config,
                                 resume=args.resume)
    except KeyboardInterrupt:
        if args.debug:
            raise
        done = [s for s in ("head", "adapter") if (checkpoints / s / "checkpoint.pt").is_file()]
        print(f"error: interrupted; {'the same command with --resume continues from the last finished epoch' if done else 'no epoch had finished, so run the command again'}",
              file=sys.stderr)
        return 130
    seconds = time.perf_counter() - started
    trainable = hl.count_parameters(model)[0]
    stage = result["adapter"]
    metric = train_data.task.metric
    hl.save_adapter(model, out)
    summary = {"task": train_data.task.name, "metric": metric, "score": result["best_metric"],
               "model": base_model_id(model_path(args.model)), "source": train_data.source, "data_dir": args.data_dir,
               "source_option": args.source, "train_examples": len(train_data), "dev_examples": len(dev_data),
               "eval_limit": args.eval_limit, "seed": args.seed, "max_length": args.max_length,
               "trainable_params": trainable, "base_params": base_total, "seconds": seconds,
               "samples_per_second": stage["samples_per_second"], "device": stage["device"],
               "precision": stage["precision"], "collapsed": stage["collapsed"],
               "resumed_after_epoch": {k: v["start_epoch"] for k, v in result.items() if k != "best_metric"},
               "history": {k: v["history"] for k, v in result.items() if k != "best_metric"}}
    atomic_write(out / SUMMARY_NAME, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"))
    shutil.rmtree(checkpoints, ignore_errors=True)  # the run is complete: nothing left to resume
    notes = ""
    if stage["collapsed"]:
        notes += " | COLLAPSED to a constant prediction: not a result (see the warning)"
    if train_data.source == SAMPLE_SOURCE:
        notes += " | data: built-in sample, NOT GLUE (set GLUE_DIR or --data-dir for real results)"
    print(f"{summary['task']} | {metric} {result['best_metric']:.4f} | trainable params {trainable:,} "
          f"({_percent(trainable, base_total)}) | {seconds:.1f} s | {stage['samples_per_second']:.0f} samples/s "
          f"({stage['device']}, {stage['precision']}) | adapter saved to {out}{notes}")
    return 1 if stage["collapsed"] else 0


def _read_summary(directory: Path) -> dict:
    path = directory / SUMMARY_NAME
    if not path.is_file():
        raise CommandLineError(f"no {SUMMARY_NAME} in {directory}; give a folder written by "
                               "'python -m hadamard_lite train' (default: runs/sst2)")
    try:
        summary = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CommandLineError(f"{path} is not valid JSON ({err}); the run folder is damaged: train again") from None
    missing = [k for k in SUMMARY_KEYS if k not in summary] if isinstance(summary, dict) else list(SUMMARY_KEYS)
    if missing:
        raise CommandLineError(f"{path} lacks {missing}; it was not written by 'python -m hadamard_lite train': "
                               "train again")
    return summary


def evaluate(args) -> int:
    import hadamard_lite as hl
    from hadamard_lite.adapter_files import read_adapter_config
    from hadamard_lite.data import load_glue
    from hadamard_lite.trainer import TrainConfig, Trainer, pick_device

    device = pick_device(args.device)
    if args.data_dir is not None and not Path(args.data_dir).is_dir():
        raise CommandLineError(f"--data-dir {args.data_dir} is not a folder; give the glue_data/ folder")
    directory = Path(args.adapter)
    summary = _read_summary(directory)
    read_adapter_config(directory)  # a damaged adapter is reported before anything loads
    # Scored in the precision of training on the same kind of device (else an fp32 run on a bf16 machine would
    # be checked in bf16 and differ); on another kind of device, that device's own default.
    same_kind = device.type == str(summary.get("device", "")).split(":")[0]
    precision = summary.get("precision", "auto") if same_kind else "auto"
    dev_data = load_glue(summary["task"], "dev", args.data_dir or summary["data_dir"], summary["source_option"],
                         limit=summary["eval_limit"] or None, seed=summary["seed"])
    model = hl.load_model(summary["model"], num_labels=dev_data.task.num_labels)
    hl.load_adapter(model, directory)
    hl.freeze_for_stage(model, "adapter", train_head=True)
    trainer = Trainer(model, hl.load_tokenizer(summary["model"]), dev_data, dev_data,
                      TrainConfig(max_length=summary["max_length"], device=args.device, progress=False,
                                  precision=precision))
    metrics = trainer.evaluate()
    score = next(iter(metrics.values()))
    same = abs(score - summary["score"]) < 1e-3
    print(f"{summary['task']} | {summary['metric']} {score:.4f} | at training: {summary['score']:.4f} "
          f"({'reproduced' if same else 'DIFFERENT'}) | {dev_data.source}")
    return 0 if same else 1


def demo(args) -> int:
    import torch
    import hadamard_lite as hl
    from hadamard_lite.models import load_config

    load_config(args.model)  # a wrong name fails here, in one line
    model = hl.load_model(args.model, num_labels=2).eval()
    tokenizer = hl.load_tokenizer(args.model)
    batch = tokenizer(["a gripping, beautifully acted film.", "the plot never comes together."],
                      padding=True, return_tensors="pt")
    with torch.no_grad():
        before = model(**batch).logits
        hl.add_hadamard_adapter(model)
        after = model(**batch).logits
    hl.freeze_for_stage(model, "adapter")
    print(f"model: {args.model or hl.DEFAULT_MODEL} ({model.config.model_type}, "
          f"{len(hl.adapted_layers(model))} adapted layers, hidden size {model.config.hidden_size})")
    hl.print_trainable_parameters(model)
    diff = (after - before).abs().max().item()
    print(f"identity at start: max |adapted - original| = {diff} -> {'OK' if diff == 0 else 'FAILED'}")
    return 0 if diff == 0 else 1


def build_parser() -> argparse.ArgumentParser:
    from hadamard_lite.glue_tasks import GLUE_TASKS

    parser = _Parser(prog="python -m hadamard_lite", description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    common = _Parser(add_help=False)
    common.add_argument("--debug", action="store_true", help="on an error, show the full traceback")
    model_help = "hub id or local folder (default: the bundled all-MiniLM-L6-v2)"

    p = commands.add_parser("train", parents=[common], help="train a Hadamard adapter on a GLUE task (two-stage recipe)")
    p.add_argument("--task", default="sst2", choices=sorted(GLUE_TASKS))
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("--data-dir", default=None, help="a glue_data/ folder (default: $GLUE_DIR)")
    p.add_argument("--source", default="auto", choices=["auto", "tsv", "hub", "sample"])
    p.add_argument("--limit", type=int, default=None, help="training examples (default: 2000 on CPU, all on GPU; 0: all)")
    p.add_argument("--eval-limit", type=int, default=None, help="dev examples (default and 0: all)")
    p.add_argument("--head-epochs", type=int, default=1, help="stage 1: epochs of head-only training")
    p.add_argument("--epochs", type=int, default=3, help="stage 2: epochs of adapter training")
    p.add_argument("--head-lr", type=float, default=1e-2)
    p.add_argument("--lr", type=float, default=1e-2, help="stage 2 learning rate")
    p.add_argument("--freeze-head", action="store_true", help="keep the head frozen in stage 2 (as one summary of the paper says)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="adapted layers (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: bf16 on recent GPUs, fp16 on older ones, fp32 on CPUs and MPS (bf16 there: ask for it)")
    p.add_argument("--output", default=None, help="where to save the adapter (default: runs/TASK)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same command from its last finished epoch")
    p.set_defaults(run=train)

    p = commands.add_parser("evaluate", parents=[common], help="reload a saved adapter and evaluate it on the dev set")
    p.add_argument("adapter", nargs="?", default="runs/sst2", help="folder written by train (default: runs/sst2)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.set_defaults(run=evaluate)

    p = commands.add_parser("demo", parents=[common], help="inject adapters into a pre-trained model and check identity at start")
    p.add_argument("--model", default=None, help=model_help)
    p.set_defaults(run=demo)

    from hadamard_lite.predict import add_predict_command
    add_predict_command(commands, parents=[common])
    return parser


def _print_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {_one_line(message)}", file=sys.stderr)  # one line, without the source line


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = _print_warning
            args = build_parser().parse_args(argv)
            return args.run(args)
    except EXPECTED_ERRORS as err:
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside training (which says how to resume): nothing to continue
        if debug:
            raise
        print("error: interrupted; run the command again", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            raise
        if type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError, without importing torch here
            print("error: out of GPU memory; lower --batch-size or --max-length", file=sys.stderr)
            return 2
        print(f"error: unexpected {type(err).__name__}: {_one_line(err)}; this is a bug in hadamard_lite: "
              "run the command again with --debug and report the traceback", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
