"""Throughput and memory of one backbone serving many tasks (hadamard_lite.MultiTaskModel).

    nice -n 5 python benchmarks/multitask_throughput.py                      # CPU: results/multitask/
    python benchmarks/multitask_throughput.py --device cuda                  # GPU: results/multitask_cuda/

Every method sees the same batches of random token ids (no padding) on the same backbone
(the bundled MiniLM, or HADAMARD_LITE_MODEL), with random adapters: speed does not depend
on what the adapters learned. Methods, for N = 2, 5 and 20 tasks shuffled within each batch:

- merged: one task, its adapter merged into the projections (``hl.merge_adapter``): the cost
  of the plain base model, the floor for any adapter method.
- mixed: ``MultiTaskModel`` with N tasks, every example with its own task's adapter and head.
- loop: each task's examples through that task's own model (N merged models, one call per task).
- merged-split: the loop's control: the merged model on the loop's sub-batches, one task only.
- peft-lora: PEFT LoRA (r=8 on query and value, the PEFT default for BERT) with N adapters and
  ``adapter_names=`` mixed batches, heads included.

Each timing runs --batches batches; after one warm-up per method, --repeats rounds time every
method once in a shuffled order (so a change in the machine's load hits all methods alike). The table gives
the median samples/s and the spread (min to max); ratios are medians of per-round ratios. Memory: parameters and bytes held by
one MultiTaskModel with N tasks against N separate task models. Writes results.md and
results.json to --out (and the JSON for the CPU into the package, for notebook 07 on Colab).
"""
import argparse
import copy
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hadamard_lite as hl  # noqa: E402
from hadamard_lite.adapter_files import WEIGHTS_NAME, atomic_write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Where notebook 07 finds the CPU results when only the package is installed (Colab).
PACKAGED = ROOT / "hadamard_lite" / "measured" / "multitask_throughput_cpu.json"
HEAD_SIZES = (2, 1, 3)  # tasks cycle through SST-2-like, STS-B-like (regression) and MNLI-like heads
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def make_adapters(root: Path, count: int, seed: int = 0) -> dict:
    """``count`` random adapters on all layers, saved as save_adapter writes them."""
    g = torch.Generator().manual_seed(seed)
    folders = {}
    for k in range(count):
        model = hl.load_model(num_labels=HEAD_SIZES[k % len(HEAD_SIZES)])
        hl.add_hadamard_adapter(model)
        hl.freeze_for_stage(model, "adapter", train_head=True)
        with torch.no_grad():
            for p in [p for p in model.parameters() if p.requires_grad]:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
        folders[f"task{k}"] = hl.save_adapter(model, root / f"task{k}")
    return folders


def own_model(folder, num_labels, device, dtype, merged=True):
    """A task's own model: the base model plus load_adapter (merged for speed when asked)."""
    model = hl.load_adapter(hl.load_model(num_labels=num_labels), folder)
    if merged:
        hl.merge_adapter(model)
    return model.to(device=device, dtype=dtype).eval()


def peft_lora(num_tasks: int, device, dtype):
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"],
                        init_lora_weights=False)  # non-zero B, as after training
    model = get_peft_model(hl.load_model(num_labels=2), config, adapter_name="task0")
    for k in range(1, num_tasks):
        model.add_adapter(f"task{k}", config)
    return model.to(device=device, dtype=dtype).eval()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def measure_all(runners: dict, batch_size, batches, repeats, device) -> dict:
    """Samples/s of each runner (one batch per call): one warm-up each, then ``repeats`` rounds
    that time every runner once, in a shuffled order, so a change in the machine's load hits all."""
    rates = {key: [] for key in runners}
    with torch.inference_mode():
        for run in runners.values():
            run()
        sync(device)
        order = list(runners)
        for round_ in range(repeats):
            # A new order every round, so no method always runs first (or after the same one).
            random.Random(round_).shuffle(order)
            for key in order:
                run = runners[key]
                start = time.perf_counter()
                for _ in range(batches):
                    run()
                sync(device)
                rates[key].append(batch_size * batches / (time.perf_counter() - start))
            print(f"round {round_ + 1}/{repeats}: " + ", ".join(f"{m} {n}: {r[-1]:.1f}" for (m, n), r in rates.items()),
                  flush=True)
    return rates


def loop_over_tasks(models: dict, input_ids, mask, tasks):
    """Each task's examples through its own model; logits back in batch order."""
    logits = [None] * len(tasks)
    positions = {}
    for i, task in enumerate(tasks):
        positions.setdefault(task, []).append(i)
    for task, where in positions.items():
        index = torch.tensor(where, device=input_ids.device)
        for i, row in zip(where, models[task](input_ids=input_ids[index], attention_mask=mask[index]).logits.unbind(0)):
            logits[i] = row
    return logits


def held(module) -> tuple:
    """(parameters, bytes) held by ``module``, each tensor once."""
    params = list(module.parameters())
    return sum(p.numel() for p in params), sum(p.numel() * p.element_size() for p in params)


def machine(device) -> str:
    if device.type == "cuda":
        return f"GPU {torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"CPU {cpu}, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=sorted(DTYPES),
                        help="model weights' dtype (fp32 on CPUs: bf16 is emulated on many)")
    parser.add_argument("--tasks", type=int, nargs="+", default=[2, 5, 20], help="numbers of tasks per batch")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on CPU, 256 on GPU")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per example (default: 64 on CPU, 128 on GPU)")
    parser.add_argument("--batches", type=int, default=None, help="batches per timing (default: 1 on CPU, 20 on GPU)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of timings after the warm-up (at least 3)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--skip-peft", action="store_true")
    parser.add_argument("--out", default=None, help="default: results/multitask (CPU), results/multitask_DEVICE")
    args = parser.parse_args()
    device = torch.device(args.device)
    gpu = device.type != "cpu"
    batch_size = args.batch_size or (256 if gpu else 32)
    seq_len = args.seq_len or (128 if gpu else 64)
    batches = args.batches or (20 if gpu else 1)
    if args.repeats < 3:
        parser.error("--repeats must be at least 3")
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = DTYPES[args.precision]
    if not args.skip_peft:
        try:
            import peft  # noqa: F401
        except ImportError:
            print("peft is not installed: the PEFT LoRA comparison is skipped (pip install peft to include it)")
            args.skip_peft = True
    out = Path(args.out or ("results/multitask" if not gpu else f"results/multitask_{device.type}"))
    header = {"command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "machine": machine(device),
              "device": str(device), "threads": torch.get_num_threads(), "precision": args.precision,
              "model": os.environ.get("HADAMARD_LITE_MODEL") or hl.DEFAULT_MODEL,
              "batch_size": batch_size, "seq_len": seq_len, "batches_per_timing": batches, "repeats": args.repeats,
              "load_average_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None}
    print(json.dumps(header), flush=True)

    vocab = hl.load_model(num_labels=None).config.vocab_size
    g = torch.Generator().manual_seed(0)
    input_ids = torch.randint(1000, vocab, (batch_size, seq_len), generator=g).to(device)
    mask = torch.ones_like(input_ids)
    runners, memory = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        folders = make_adapters(Path(tmp), max(args.tasks))
        names = list(folders)
        adapter_file_bytes = (folders["task0"] / WEIGHTS_NAME).stat().st_size
        single_params, single_bytes = held(own_model(folders["task0"], HEAD_SIZES[0], "cpu", dtype, merged=False))
        merged = own_model(folders["task0"], HEAD_SIZES[0], device, dtype)
        runners["merged", 1] = lambda: merged(input_ids=input_ids, attention_mask=mask).logits
        # Default arguments bind each loop's objects to its runner.
        for n in args.tasks:
            chosen = {name: folders[name] for name in names[:n]}
            tasks = [names[i % n] for i in range(batch_size)]
            random.Random(n).shuffle(tasks)  # tasks shuffled within the batch
            mt = hl.MultiTaskModel.from_adapters(chosen, model=hl.load_model(num_labels=None)).to(device=device, dtype=dtype)
            runners["mixed", n] = lambda mt=mt, tasks=tasks: mt(input_ids, mask, tasks=tasks)
            own = {name: own_model(folder, HEAD_SIZES[k % 3], device, dtype) for k, (name, folder) in enumerate(chosen.items())}
            runners["loop", n] = lambda own=own, tasks=tasks: loop_over_tasks(own, input_ids, mask, tasks)
            # The control for the loop: one merged model on the loop's sub-batches (same sizes, no task
            # switching). On a CPU smaller batches can run faster per example; this separates that batch-size
            # effect from the cost of switching tasks.
            sizes = [tasks.count(name) for name in dict.fromkeys(tasks)]
            runners["merged-split", n] = lambda sizes=sizes: [merged(input_ids=i, attention_mask=m).logits for i, m in
                                                             zip(input_ids.split(sizes), mask.split(sizes))]
            if not args.skip_peft:
                lora = peft_lora(n, device, dtype)
                peft_tasks = [f"task{names.index(t)}" for t in tasks]
                runners["peft-lora", n] = lambda lora=lora, peft_tasks=peft_tasks: lora(
                    input_ids=input_ids, attention_mask=mask, adapter_names=peft_tasks).logits
            separate = [held(own_model(folder, HEAD_SIZES[k % 3], "cpu", dtype, merged=False))
                        for k, folder in enumerate(chosen.values())]
            mt_params, mt_bytes = held(mt)
            memory.append({"tasks": n, "multitask_params": mt_params, "multitask_bytes": mt_bytes,
                           "separate_params": sum(p for p, _ in separate), "separate_bytes": sum(b for _, b in separate)})
    rates = measure_all(runners, batch_size, batches, args.repeats, device)
    header["load_average_at_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    write(out, header, rates, memory, single_params, single_bytes, adapter_file_bytes)


def _load(values) -> str:
    return "unknown" if values is None else ", ".join(f"{v:.1f}" for v in values)


def write(out: Path, header, rates, memory, single_params, single_bytes, adapter_file_bytes) -> None:
    rows = [{"method": m, "tasks": n, "median": statistics.median(r), "min": min(r), "max": max(r), "runs": r}
            for (m, n), r in rates.items()]

    def ratio(a, b):  # median of the per-round ratios: both timed back to back, under the same load
        return statistics.median(x / y for x, y in zip(rates[a], rates[b]))

    ratios = []
    for n in sorted(n for m, n in rates if m == "mixed"):
        entry = {"tasks": n, "mixed_over_merged": ratio(("mixed", n), ("merged", 1)),
                 "mixed_over_loop": ratio(("mixed", n), ("loop", n))}
        if ("merged-split", n) in rates:
            entry["merged_split_over_merged"] = ratio(("merged-split", n), ("merged", 1))
        if ("peft-lora", n) in rates:
            entry["mixed_over_peft_lora"] = ratio(("mixed", n), ("peft-lora", n))
        # The targets: at least 0.85x merged, and faster than the per-task loop.
        entry["meets_085_of_merged"] = entry["mixed_over_merged"] >= 0.85
        entry["faster_than_loop"] = entry["mixed_over_loop"] > 1
        ratios.append(entry)
    result = {**header, "rows": rows, "ratios": ratios, "memory": memory, "single_task_model_params": single_params,
              "single_task_model_bytes": single_bytes, "adapter_file_bytes": adapter_file_bytes}
    md = [f"# One backbone, many tasks: throughput and memory\n",
          f"Command: `{header['command']}`  ",
          f"Machine: {header['machine']}, {header['threads']} threads, precision {header['precision']}; "
          f"load average (1, 5, 15 min) {_load(header['load_average_at_start'])} at start, "
          f"{_load(header['load_average_at_end'])} at end  ",
          f"Model: {header['model']}; batch {header['batch_size']} x {header['seq_len']} tokens (random ids, no padding); "
          f"{header['batches_per_timing']} batch(es) per timing; {header['repeats']} rounds after a warm-up, each timing "
          "every method once, in a new random order. Ratios: median of the per-round ratios.\n",
          "| method | tasks per batch | samples/s (median) | spread (min to max) |", "|---|---|---|---|"]
    md += [f"| {r['method']} | {r['tasks']} | {r['median']:.1f} | {r['min']:.1f} to {r['max']:.1f} |" for r in rows]
    md += ["", "| tasks | mixed / merged | mixed / loop | mixed / PEFT LoRA mixed | >= 0.85x merged | faster than loop "
               "| merged on the loop's sub-batches / merged |",
           "|---|---|---|---|---|---|---|"]
    md += [f"| {e['tasks']} | {e['mixed_over_merged']:.2f} | {e['mixed_over_loop']:.2f} | "
           f"{e.get('mixed_over_peft_lora', float('nan')):.2f} | {e['meets_085_of_merged']} | {e['faster_than_loop']} | "
           f"{e.get('merged_split_over_merged', float('nan')):.2f} |" for e in ratios]
    md += ["", "The last column is the loop's control: the one merged model run on the same sub-batches as the loop, "
               "without switching tasks. Above 1.00 means smaller batches alone run faster per example on this device, "
               "an edge the loop gets from splitting the batch, not from its adapters."]
    md += ["", f"Memory (parameters and bytes held; one task's own model: {single_params:,} parameters, "
               f"{single_bytes / 2**20:.1f} MiB; one adapter file: {adapter_file_bytes / 1024:.1f} KiB):", "",
           "| tasks | MultiTaskModel params | MiB | separate models params | MiB | ratio |", "|---|---|---|---|---|---|"]
    md += [f"| {m['tasks']} | {m['multitask_params']:,} | {m['multitask_bytes'] / 2**20:.1f} | {m['separate_params']:,} | "
           f"{m['separate_bytes'] / 2**20:.1f} | {m['separate_bytes'] / m['multitask_bytes']:.1f}x |" for m in memory]
    text = "\n".join(md) + "\n"
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(result, indent=2) + "\n"
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(payload))
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(text))
    if header["device"] == "cpu" and out.resolve() == (ROOT / "results" / "multitask").resolve():
        PACKAGED.parent.mkdir(exist_ok=True)
        atomic_write(PACKAGED, lambda tmp: Path(tmp).write_text(payload))


if __name__ == "__main__":
    main()
