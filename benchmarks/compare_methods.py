"""Hadamard adapter vs full fine-tuning and other parameter-efficient methods, side by side.

    GLUE_DIR=../shared/glue_data python benchmarks/compare_methods.py --limit 1000 --eval-limit 500 --epochs 2
    python benchmarks/compare_methods.py --limit 0 --seeds 0 1 2 --out results/benchmark_gpu    # a GPU: all data

One run, one machine, the same data, model, batch size and epochs for every method. Quality:
every method trains in one stage with the task head trainable (Hadamard = adapters +
post-attention LayerNorms + head), at a learning rate suited to it (the table prints it).
Speed: samples/s end to end (batching and padding included) for our trainer, and for PEFT IA3
and Hadamard driven by Hugging Face `Trainer` on the same token ids and batch size.
Writes Markdown and JSON to --out.
"""
import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hadamard_lite as hl  # noqa: E402
from hadamard_lite.data import encode, load_glue  # noqa: E402
from hadamard_lite.trainer import TrainConfig, Trainer, pick_device  # noqa: E402

TASKS = ["sst2", "mrpc", "stsb", "rte", "cola"]
QUALITY_TASKS = ["sst2", "mrpc", "stsb", "rte"]  # the target's mean
# One learning rate per method for every task (not tuned per task): the tiny methods share 1e-2,
# LoRA's low-rank matrices take 3e-3, full fine-tuning 1e-4.
LEARNING_RATES = {"full": 1e-4, "head": 1e-2, "hadamard": 1e-2, "bitfit": 1e-2, "layernorm": 1e-2,
                  "ia3": 1e-2, "lora": 3e-3}
METHODS = list(LEARNING_RATES)


def prepare(method: str, num_labels: int):
    """A fresh pre-trained model with exactly the method's parameters trainable."""
    model = hl.load_model(num_labels=num_labels)
    head = set(hl.head_parameters(model))
    if method == "full":
        model.requires_grad_(True)
    elif method == "head":
        hl.freeze_for_stage(model, "head")
    elif method == "hadamard":
        hl.add_hadamard_adapter(model)
        hl.freeze_for_stage(model, "adapter", train_head=True)
    elif method in ("bitfit", "layernorm"):
        for name, p in model.named_parameters():
            is_norm = "LayerNorm" in name
            keep = name.endswith(".bias") if method == "bitfit" else is_norm
            p.requires_grad_(keep or name in head)
    elif method in ("ia3", "lora"):
        from peft import IA3Config, LoraConfig, get_peft_model
        config = (IA3Config(task_type="SEQ_CLS") if method == "ia3" else
                  LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]))
        model = get_peft_model(model, config)
    else:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    return model


def file_size(model, method: str) -> int:
    """Bytes of what a user must store per task."""
    with tempfile.TemporaryDirectory() as tmp:
        if method == "hadamard":
            hl.save_adapter(model, tmp)
            return (Path(tmp) / "adapter_model.safetensors").stat().st_size
        if method in ("ia3", "lora"):
            model.save_pretrained(tmp)
            return (Path(tmp) / "adapter_model.safetensors").stat().st_size
        state = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, f"{tmp}/w.safetensors")
        return Path(f"{tmp}/w.safetensors").stat().st_size


def base_parameters() -> int:
    return hl.count_parameters(hl.load_model(num_labels=None))[1]


def run_quality(args, tokenizer, device) -> list:
    previous = Path(args.out) / "results.json"
    rows = json.loads(previous.read_text())["runs"] if args.resume and previous.is_file() else []
    done = {(r["task"], r["method"], r["seed"]) for r in rows}
    base = base_parameters()
    started = time.perf_counter()
    for seed in args.seeds:
        for task in args.tasks:
            if rows and time.perf_counter() - started > args.time_budget:
                print(f"time budget of {args.time_budget} s spent: stopped before seed {seed}, {task}", flush=True)
                return rows
            train = load_glue(task, "train", limit=args.limit or None, seed=seed)
            dev = load_glue(task, "dev", limit=args.eval_limit or None, seed=0)
            for method in args.methods:
                if (task, method, seed) in done:
                    continue  # --resume: measured by an earlier, interrupted run of the same command
                torch.manual_seed(seed)
                model = prepare(method, train.task.num_labels)
                trainable = hl.count_parameters(model)[0]
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                config = TrainConfig(epochs=args.epochs, lr=LEARNING_RATES[method], batch_size=args.batch_size,
                                     max_length=args.max_length, seed=seed, progress=False)
                result = Trainer(model, tokenizer, train, dev, config).fit()
                rows.append({"task": task, "method": method, "seed": seed, "score": result["best_metric"],
                             "metric": train.task.metric, "trainable": trainable, "trainable_pct": 100 * trainable / base,
                             "file_bytes": file_size(model, method), "samples_per_s": result["samples_per_second"],
                             "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None,
                             "train_examples": len(train), "dev_examples": len(dev), "source": train.source})
                print(f"  {task:5s} seed {seed} {method:9s} {train.task.metric} {result['best_metric']:.4f} "
                      f"{result['samples_per_second']:.0f} samples/s", flush=True)
                write(args, rows, None)  # keep partial results if the run is cut short
    return rows


def run_speed(args, tokenizer, device) -> list:
    """samples/s on one SST-2 slice: our trainer vs Hugging Face Trainer, same ids and batch size."""
    from transformers import DataCollatorWithPadding, Trainer as HFTrainer, TrainingArguments

    data = load_glue("sst2", "train", limit=args.speed_examples, seed=0)
    ids = encode(data, tokenizer, args.max_length)
    rows = []

    def measure(label, method, driver):
        torch.manual_seed(0)
        model = prepare(method, 2)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if driver == "ours":
            config = TrainConfig(epochs=1, lr=LEARNING_RATES[method], batch_size=args.speed_batch_size,
                                 max_length=args.max_length, progress=False)
            seconds = Trainer(model, tokenizer, data, None, config).fit()["train_seconds"]
        else:
            examples = [{"input_ids": x, "attention_mask": [1] * len(x), "labels": y} for x, y in zip(ids, data.labels)]
            with tempfile.TemporaryDirectory() as tmp:
                targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.speed_batch_size,
                                          num_train_epochs=1, learning_rate=LEARNING_RATES[method], report_to=[],
                                          save_strategy="no", logging_strategy="no", disable_tqdm=True,
                                          bf16=device.type == "cuda" and torch.cuda.is_bf16_supported(),
                                          use_cpu=device.type == "cpu", dataloader_num_workers=0)
                trainer = HFTrainer(model=model, args=targs, train_dataset=examples,
                                    data_collator=DataCollatorWithPadding(tokenizer))
                started = time.perf_counter()
                trainer.train()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - started
        rows.append({"run": label, "samples_per_s": len(data) / seconds,
                     "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None})
        print(f"  speed {label:28s} {len(data) / seconds:8.0f} samples/s", flush=True)

    measure("warm-up (not reported)", "hadamard", "ours")
    rows.clear()
    for label, method, driver in [("hadamard, our trainer", "hadamard", "ours"), ("full, our trainer", "full", "ours"),
                                  ("ia3, our trainer", "ia3", "ours"), ("lora, our trainer", "lora", "ours"),
                                  ("ia3, HF Trainer", "ia3", "hf"), ("hadamard, HF Trainer", "hadamard", "hf")]:
        measure(label, method, driver)
    return rows


def summarize(rows: list) -> dict:
    """Mean over seeds per (method, task), the 4-task mean, and the Hadamard/full ratios.
    A seed that a time budget cut short is left out when at least one seed is complete."""
    runs_per_seed = {}
    for r in rows:
        runs_per_seed[r["seed"]] = runs_per_seed.get(r["seed"], 0) + 1
    complete = {s for s, n in runs_per_seed.items() if n == max(runs_per_seed.values())}
    rows = [r for r in rows if r["seed"] in complete]
    table = {}
    for r in rows:
        table.setdefault(r["method"], {}).setdefault(r["task"], []).append(r)
    out = {}
    for method, tasks in table.items():
        scores = {t: statistics.mean(x["score"] for x in rs) for t, rs in tasks.items()}
        first = next(iter(tasks.values()))[0]
        quality = [scores[t] for t in QUALITY_TASKS if t in scores]
        out[method] = {"scores": scores, "seeds": len(next(iter(tasks.values()))),
                       "mean4": statistics.mean(quality) if len(quality) == len(QUALITY_TASKS) else None,
                       "trainable": first["trainable"], "trainable_pct": first["trainable_pct"],
                       "file_bytes": first["file_bytes"],
                       "samples_per_s": statistics.mean(x["samples_per_s"] for rs in tasks.values() for x in rs),
                       "peak_mem_gb": max((x["peak_mem_gb"] or 0) for rs in tasks.values() for x in rs) or None}
    return out


def write(args, rows, speed) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows) if rows else {}
    meta = {"command": " ".join(sys.argv), "device": args.device_name, "torch": torch.__version__,
            "python": platform.python_version(), "args": vars(args)}
    (out / "results.json").write_text(json.dumps({"meta": meta, "runs": rows, "summary": summary, "speed": speed},
                                                 indent=1, default=str) + "\n")
    lines = [f"# Hadamard adapter vs other methods ({args.device_name})", "",
             f"Command: `{meta['command']}`  ", f"torch {meta['torch']}, Python {meta['python']}; "
             f"model {hl.DEFAULT_MODEL}; data: {rows[0]['source'] if rows else '-'} (train examples per task: "
             f"{'all' if not args.limit else args.limit}, dev: {'all' if not args.eval_limit else args.eval_limit}); "
             f"{args.epochs} epochs, batch {args.batch_size}, max length {args.max_length}, seeds {args.seeds}.", "",
             "| method | lr | " + " | ".join(args.tasks) + " | mean (sst2, mrpc, stsb, rte) | trainable | % | file KB "
             "| samples/s | peak GPU GB |", "|" + "---|" * (len(args.tasks) + 8)]
    for method in args.methods:
        if method not in summary:
            continue
        s = summary[method]
        cells = [f"{100 * s['scores'][t]:.1f}" if t in s["scores"] else "-" for t in args.tasks]
        mean = f"{100 * s['mean4']:.1f}" if s["mean4"] is not None else "-"
        mem = f"{s['peak_mem_gb']:.2f}" if s["peak_mem_gb"] else "n/a (CPU)"
        lines.append(f"| {method} | {LEARNING_RATES[method]:g} | " + " | ".join(cells) +
                     f" | {mean} | {s['trainable']:,} | {s['trainable_pct']:.4f} | {s['file_bytes'] / 1e3:.0f} "
                     f"| {s['samples_per_s']:.0f} | {mem} |")
    if "hadamard" in summary and "full" in summary and summary["full"]["mean4"] and summary["hadamard"]["mean4"]:
        h, f = summary["hadamard"], summary["full"]
        lines += ["", f"Hadamard / full fine-tuning: quality {100 * h['mean4'] / f['mean4']:.1f}% (4-task mean), "
                      f"samples/s {h['samples_per_s'] / f['samples_per_s']:.2f}x"
                  + (f", peak memory {100 * h['peak_mem_gb'] / f['peak_mem_gb']:.0f}%" if h["peak_mem_gb"] else "") + "."]
    if speed:
        lines += ["", f"## Speed: SST-2, {args.speed_examples} examples, batch {args.speed_batch_size}, one epoch", "",
                  "| run | samples/s | peak GPU GB |", "|---|---|---|"]
        lines += [f"| {r['run']} | {r['samples_per_s']:.0f} | {r['peak_mem_gb'] and round(r['peak_mem_gb'], 2) or 'n/a'} |"
                  for r in speed]
        by = {r["run"]: r["samples_per_s"] for r in speed}
        lines += ["", f"Hadamard (our trainer) / IA3 (HF Trainer): {by['hadamard, our trainer'] / by['ia3, HF Trainer']:.2f}x; "
                      f"Hadamard / full, both our trainer: {by['hadamard, our trainer'] / by['full, our trainer']:.2f}x."]
    (out / "results.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=TASKS)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--limit", type=int, default=1000, help="training examples per task (0: all)")
    parser.add_argument("--eval-limit", type=int, default=500, help="dev examples per task (0: all)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--speed-examples", type=int, default=512)
    parser.add_argument("--speed-batch-size", type=int, default=32)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--resume", action="store_true", help="keep the runs already in --out/results.json")
    parser.add_argument("--time-budget", type=float, default=float("inf"),
                        help="seconds after which no further seed is started")
    parser.add_argument("--out", default="results/benchmark_cpu")
    args = parser.parse_args()
    device = pick_device()
    args.device_name = (torch.cuda.get_device_name() if device.type == "cuda" else
                        f"CPU, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    tokenizer = hl.load_tokenizer()
    print(f"device: {args.device_name}", flush=True)
    speed = None if args.skip_speed else run_speed(args, tokenizer, device)
    rows = [] if args.skip_quality else run_quality(args, tokenizer, device)
    write(args, rows, speed)
    print((Path(args.out) / "results.md").read_text())


if __name__ == "__main__":
    main()
