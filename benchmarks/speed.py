"""Training speed, measured so it can be trusted: every configuration warmed up once, then
timed --repeats times in interleaved rounds; the table reports the median and the range.

    python benchmarks/speed.py --out results/speed_cpu                   # run it alone on the machine
    python benchmarks/speed.py --out results/speed_gpu --examples 16384 --batch-size 256

Three comparisons, kept apart so that trainer effects and method effects do not mix:
1. Methods inside one trainer (ours): samples/s (and peak GPU memory) per method.
2. Trainers for the same method: ours vs Hugging Face `Trainer` with its default batching and
   with `group_by_length=True`, for Hadamard, PEFT IA3 and PEFT LoRA.
3. Precision: float32 vs bf16 autocast for Hadamard and full fine-tuning in our trainer.
samples/s counts one epoch over the same SST-2 slice, batching and padding included.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hadamard_lite as hl  # noqa: E402
from hadamard_lite.adapter_files import atomic_write  # noqa: E402
from hadamard_lite.data import encode, load_glue  # noqa: E402
from hadamard_lite.trainer import TrainConfig, Trainer, pick_device, precision_for  # noqa: E402
from methods import prepare  # noqa: E402


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 instructions (AVX-512 BF16 or AMX). Without them bf16 matrix
    products are emulated and far slower than float32 (``results/speed_cpu_precision``), so the
    results file names it beside its speeds."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no cheap, reliable check, so assume not
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


LR = {"full": 5e-5, "lora": 1e-3}  # speed does not depend on the rate; 1e-2 for the small methods


def configurations(device, with_bf16: bool) -> list:
    """(label, method, driver, precision); driver: ours, hf, hf-grouped."""
    auto = precision_for(device)
    ours = [(f"{m}, our trainer", m, "ours", auto) for m in
            ["full", "head", "hadamard1", "bitfit", "layernorm", "ia3", "lora"]]
    hf = [(f"{m}, HF Trainer{' (group_by_length)' if g else ''}", m, "hf-grouped" if g else "hf", auto)
          for m in ["hadamard1", "ia3", "lora"] for g in (False, True)]
    other = "bf16" if auto == "fp32" else "fp32"
    precision = [(f"{m}, our trainer, {other}", m, "ours", other) for m in ["hadamard1", "full"]] if with_bf16 else []
    return ours + hf + precision


def measure(method, driver, precision, data, ids, tokenizer, args, device) -> dict:
    torch.manual_seed(0)
    model = prepare(method, 2)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    lr = LR.get(method, 1e-2)
    if driver == "ours":
        config = TrainConfig(epochs=1, lr=lr, batch_size=args.batch_size, max_length=args.max_length,
                             progress=False, precision=precision)
        seconds = Trainer(model, tokenizer, data, None, config).fit()["train_seconds"]
    else:
        from transformers import DataCollatorWithPadding, Trainer as HFTrainer, TrainingArguments
        import inspect
        grouped = driver == "hf-grouped"  # transformers 5 renamed group_by_length=True
        grouping = ({"train_sampling_strategy": "group_by_length" if grouped else "random"}
                    if "train_sampling_strategy" in inspect.signature(TrainingArguments).parameters
                    else {"group_by_length": grouped})
        examples = [{"input_ids": x, "attention_mask": [1] * len(x), "labels": y} for x, y in zip(ids, data.labels)]
        with tempfile.TemporaryDirectory() as tmp:
            targs = TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch_size, num_train_epochs=1,
                                      learning_rate=lr, report_to=[], save_strategy="no", logging_strategy="no",
                                      disable_tqdm=True, bf16=precision == "bf16", fp16=precision == "fp16",
                                      use_cpu=device.type == "cpu", dataloader_num_workers=0,
                                      seed=0, **grouping)
            trainer = HFTrainer(model=model, args=targs, train_dataset=examples,
                                data_collator=DataCollatorWithPadding(tokenizer))
            started = time.perf_counter()
            trainer.train()
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
    return {"samples_per_s": len(data) / seconds,
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/speed_cpu")
    parser.add_argument("--examples", type=int, default=1024, help="SST-2 training examples per timed epoch")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--bf16-examples", type=int, default=None,
                        help="fewer examples for the other precision (CPU bf16 without native support is slow)")
    parser.add_argument("--only", nargs="*", default=None, help="labels to run (default: all)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device()
    tokenizer = hl.load_tokenizer()
    data = load_glue("sst2", "train", limit=args.examples, seed=0)
    small = load_glue("sst2", "train", limit=args.bf16_examples, seed=0) if args.bf16_examples else data
    configs = [c for c in configurations(device, True) if not args.only or c[0] in args.only]
    machine = (torch.cuda.get_device_name() if device.type == "cuda" else
               f"CPU {platform.machine()} ({'native bf16' if cpu_has_native_bf16() else 'no native bf16'}), "
               f"{torch.get_num_threads()} threads")
    print(f"{machine}: {len(configs)} configurations, 1 warm-up + {args.repeats} timed runs each", flush=True)
    times = {c[0]: [] for c in configs}
    memory = {}
    # Other work on the machine slows some rounds and not others: record how busy it was, at the start and after
    # every round, so a reader can tell a quiet measurement from a contended one.
    loads = [load_average()]
    for round_ in range(args.repeats + 1):  # round 0 is the warm-up, not reported
        for label, method, driver, precision in configs:
            slice_ = small if precision != precision_for(device) else data
            r = measure(method, driver, precision, slice_, encode(slice_, tokenizer, args.max_length), tokenizer, args, device)
            if round_:
                times[label].append(r["samples_per_s"])
                memory[label] = max(memory.get(label) or 0, r["peak_mem_gb"] or 0) or None
            print(f"  {'warm-up' if not round_ else f'round {round_}'}  {label:45s} {r['samples_per_s']:8.1f} samples/s",
                  flush=True)
        loads.append(load_average())
        if round_:  # write after every round, so a run cut short still leaves its finished rounds
            rows = [{"run": label, "method": method, "driver": driver, "precision": precision, "runs": times[label],
                     "median": statistics.median(times[label]), "min": min(times[label]), "max": max(times[label]),
                     "peak_mem_gb": memory.get(label)} for label, method, driver, precision in configs]
            write(args, machine, rows, device, rounds=round_, loads=loads)


def load_average() -> float | None:
    """The 1-minute load average (None where the system has none, e.g. Windows)."""
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def write(args, machine, rows, device, rounds: int, loads=()) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"command": "python " + " ".join(sys.argv), "machine": machine, "torch": torch.__version__,
            "python": platform.python_version(), "args": vars(args), "rounds": rounds,
            "load_average_1min": {"start": loads[0] if loads else None, "after_each_round": list(loads[1:])}}
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n"))
    by = {r["run"]: r for r in rows}
    auto = precision_for(device)

    def ratio(a, b):
        return f"{by[a]['median'] / by[b]['median']:.2f}x" if a in by and b in by else "-"

    lines = [f"# Training speed ({machine})", "", f"Command: `{meta['command']}`  ",
             f"torch {meta['torch']}, Python {meta['python']}; model {hl.DEFAULT_MODEL}; SST-2 training slice of "
             f"{args.examples} examples (other precision: {args.bf16_examples or args.examples}), batch {args.batch_size}, "
             f"max length {args.max_length}, one epoch per run; 1 warm-up run then {rounds} timed runs per "
             "configuration, interleaved; samples/s median (min-max)."
             + (f" **Cut short after {rounds} of {args.repeats} rounds.**" if rounds < args.repeats else "")
             + (f" 1-minute load average at the start {loads[0]}, after each round (warm-up first) "
                f"{', '.join(str(x) for x in loads[1:])}: on {os.cpu_count()} cores, much above the threads used "
                "means other work shared the machine." if loads and loads[0] is not None else ""), "",
             "| run | precision | samples/s median | min-max | peak GPU GB |", "|---|---|---|---|---|"]
    for r in rows:
        mem = f"{r['peak_mem_gb']:.2f}" if r["peak_mem_gb"] else "n/a"
        lines.append(f"| {r['run']} | {r['precision']} | {r['median']:.1f} | {r['min']:.1f}-{r['max']:.1f} | {mem} |")
    other = "bf16" if auto == "fp32" else "fp32"
    lines += ["", "Ratios of medians:", "",
              f"- Method, same trainer: Hadamard / full fine-tuning {ratio('hadamard1, our trainer', 'full, our trainer')}; "
              f"Hadamard / IA3 {ratio('hadamard1, our trainer', 'ia3, our trainer')}; "
              f"Hadamard / LoRA {ratio('hadamard1, our trainer', 'lora, our trainer')}.",
              f"- Trainer, same method: ours / HF Trainer for Hadamard {ratio('hadamard1, our trainer', 'hadamard1, HF Trainer')} "
              f"(with group_by_length {ratio('hadamard1, our trainer', 'hadamard1, HF Trainer (group_by_length)')}); "
              f"for IA3 {ratio('ia3, our trainer', 'ia3, HF Trainer')} ({ratio('ia3, our trainer', 'ia3, HF Trainer (group_by_length)')}); "
              f"for LoRA {ratio('lora, our trainer', 'lora, HF Trainer')} ({ratio('lora, our trainer', 'lora, HF Trainer (group_by_length)')}).",
              f"- End to end, Hadamard in our trainer / IA3 in HF Trainer: {ratio('hadamard1, our trainer', 'ia3, HF Trainer')} "
              f"(group_by_length: {ratio('hadamard1, our trainer', 'ia3, HF Trainer (group_by_length)')}).",
              f"- Precision, {other} / {auto}: Hadamard {ratio(f'hadamard1, our trainer, {other}', 'hadamard1, our trainer')}, "
              f"full fine-tuning {ratio(f'full, our trainer, {other}', 'full, our trainer')}."]
    if device.type == "cuda":
        h, f = by.get("hadamard1, our trainer"), by.get("full, our trainer")
        if h and f and h["peak_mem_gb"] and f["peak_mem_gb"]:
            lines.append(f"- Peak GPU memory, Hadamard / full fine-tuning: {100 * h['peak_mem_gb'] / f['peak_mem_gb']:.0f}%.")
    text = "\n".join(lines) + "\n"
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(text))
    print(text)


if __name__ == "__main__":
    main()
