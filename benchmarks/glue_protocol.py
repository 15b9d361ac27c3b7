"""The real-scale GLUE protocol: every method, full training sets, rates tuned on held-out
training data, several seeds. Resumable: run the same command again and it continues.

    GLUE_DIR=../shared/glue_data python benchmarks/glue_protocol.py --out results/glue_protocol_cpu
    python benchmarks/glue_protocol.py --out results/glue_protocol_cpu --summarize     # tables only

The protocol, for every task and method:
1. Learning rate: each rate of the method's grid trains on 90% of the training set (seed 0) and
   is scored on the other 10% (a seeded, label-stratified split). The best held-out score wins.
   The dev set plays no part in any choice: no rate, no epoch, no early stop.
2. Final runs: that rate trains on the whole training set, once per seed, for the same number of
   epochs; the weights after the last epoch are scored on the full dev set.
Budget rule, the same for all methods: 3 epochs over the training set, batch 32, max length 128,
warm-up 6% then linear decay; the two-stage recipe first spends its 1 head-only epoch (stage 1)
before its 3 adapter epochs, exactly as ``python -m hadamard_lite train`` does.
SST-2 trains on a seeded 20,000-example subset unless ``--sst2-limit 0`` (a GPU: all 67,349).

Every finished run is one JSON file under OUT/runs/; a run that was cut short starts again.
Several processes may work on one OUT at once (each claims a run by creating a claim file), e.g.
two single-thread workers on a 2-core machine. Trained Hadamard adapters (final and grid runs) are
kept under OUT/adapters/ for the pattern analyses, and every fully fine-tuned final model (one per task
and seed) under OUT/models/ (large: ignored by git).
"""
import argparse
import functools
import json
import math
import os
import platform
import re
import shutil
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hadamard_lite as hl  # noqa: E402
from hadamard_lite.adapter_files import atomic_write  # noqa: E402
from hadamard_lite.data import _seeded_subset, load_glue  # noqa: E402
from hadamard_lite.metrics import glue_metrics  # noqa: E402
from hadamard_lite.trainer import TrainConfig, Trainer, pick_device, train_two_stage  # noqa: E402
from methods import DESCRIPTIONS, METHODS, file_size, prepare  # noqa: E402

TASKS = ["rte", "mrpc", "stsb", "cola", "sst2"]  # smallest first, so early results cover most tasks
MEAN4 = ["sst2", "mrpc", "stsb", "rte"]  # the paper's headline comparison in this repository
GRIDS = {
    "full": [2e-5, 5e-5, 1e-4],
    "head": [3e-3, 1e-2, 3e-2],
    "hadamard2": [3e-3, 1e-2, 3e-2],  # stage 2's rate; stage 1 (head) keeps the CLI's 1e-2
    "hadamard1": [3e-3, 1e-2, 3e-2],
    "bitfit": [1e-3, 3e-3, 1e-2],
    "layernorm": [3e-3, 1e-2, 3e-2],
    "ia3": [3e-3, 1e-2, 3e-2],
    "lora": [3e-4, 1e-3, 3e-3],
}
MAIN_SEEDS = {"full": 3, "hadamard2": 3, "hadamard1": 3}  # the others: 1 seed first, 3 if time allows
HELD_OUT_SEED = 1234
EPOCHS, HEAD_EPOCHS, HEAD_LR, BATCH, MAX_LENGTH = 3, 1, 1e-2, 32, 128
# The paper's BERT-base row (GLUE dev, as cited by AdaKron; ../shared/PAPER.md).
PAPER = {"hadamard": {"sst2": 92.4, "mrpc": 90.2, "stsb": 88.5, "rte": 71.9, "cola": 58.4},
         "full": {"sst2": 91.6, "mrpc": 90.9, "stsb": 89.8, "rte": 66.4, "cola": 62.1},
         "bitfit": {"sst2": 92.1, "mrpc": 90.4, "stsb": 89.2, "rte": 72.3, "cola": 58.8},
         "lora": {"sst2": 91.5, "mrpc": 90.0, "stsb": 85.7, "rte": 71.5, "cola": 60.5}}


# ---------------------------------------------------------------- the jobs

def jobs(methods, tasks, seeds_all: int) -> list:
    """Every run of the protocol, most informative first: Hadamard (two-stage) and full fine-tuning on
    every task (grid, then seed 0), then their seeds 1 and 2 (the headline and the pattern study need
    three seeds of both), then head only on every task (cheap, and the floor the pattern study's
    "which parts matter" needs), then BitFit, LayerNorm only and IA3 on the four headline tasks (the
    target "above BitFit, LayerNorm only and IA3 on the mean of four" needs nothing else), then the
    other methods (grid, seed 0), then the others' extra seeds."""
    def block(ms, seed_range, task_list=tasks):
        out = []
        for task in task_list:
            for m in ms:
                if seed_range == (0, 1):
                    out += [{"task": task, "method": m, "kind": "grid", "lr": lr} for lr in GRIDS[m]]
                out += [{"task": task, "method": m, "kind": "final", "seed": s} for s in range(*seed_range)
                        if s < max(MAIN_SEEDS.get(m, 1), seeds_all)]
        return out
    main = [m for m in methods if m in ("hadamard2", "full")]
    floor = [m for m in methods if m == "head"]
    baselines = [m for m in methods if m in ("bitfit", "layernorm", "ia3")]
    rest = [m for m in methods if m not in main + floor + baselines]
    mean4 = [t for t in tasks if t in MEAN4]
    first = (block(main, (0, 1)) + block(main, (1, 3)) + block(floor, (0, 1)) + block(baselines, (0, 1), mean4))
    names = {job_name(j) for j in first}
    later = [j for j in block(baselines + rest, (0, 1)) + block(floor + baselines + rest, (1, 3))
             if job_name(j) not in names]
    return first + later


def job_name(job: dict) -> str:
    tail = f"lr{job['lr']:g}" if job["kind"] == "grid" else f"seed{job['seed']}"
    return f"{job['task']}_{job['method']}_{job['kind']}_{tail}"


def claim(out: Path, name: str) -> bool:
    """Take the job called ``name`` for this process; False if another live process has it."""
    path = out / "claims" / (name + ".claim")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            os.kill(int(path.read_text()), 0)
            return False  # its owner is alive
        except (ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)  # left by a process that died: take it over
        except PermissionError:
            return False
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def load_runs(out: Path) -> dict:
    runs = {}
    for path in sorted((out / "runs").glob("*.json")):
        try:
            runs[path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError:  # cannot happen with atomic writes, but never trust a file blindly
            print(f"warning: ignoring unreadable {path}", file=sys.stderr)
    return runs


def chosen_lr(runs: dict, task: str, method: str) -> float | None:
    """The grid's winner on held-out training data, or None while the grid is unfinished."""
    grid = [runs.get(job_name({"task": task, "method": method, "kind": "grid", "lr": lr})) for lr in GRIDS[method]]
    if any(r is None for r in grid):
        return None
    return max(grid, key=lambda r: (r["score"], -r["lr"]))["lr"]  # a tie goes to the smaller rate


# ---------------------------------------------------------------- one run

def data_for(task: str, args) -> dict:
    limit = (args.sst2_limit or None) if task == "sst2" else None
    if args.limit:  # a smoke test, never a result
        limit = min(limit or args.limit, args.limit)
    train = load_glue(task, "train", limit=limit, seed=0)
    held_out = set(_seeded_subset(train, max(1, len(train) // 10), HELD_OUT_SEED))
    return {"train": train, "dev": load_glue(task, "dev", limit=args.limit or None, seed=0),
            "grid_train": train.subset([i for i in range(len(train)) if i not in held_out]),
            "held_out": train.subset(sorted(held_out))}


def run_one(job: dict, lr: float, data: dict, tokenizer, args) -> tuple:
    """Train one method once; returns (its record, the trained model)."""
    task, method = job["task"], job["method"]
    seed = job.get("seed", 0)
    train, evaluate_on = (data["grid_train"], data["held_out"]) if job["kind"] == "grid" else (data["train"], data["dev"])
    torch.manual_seed(seed)
    model = prepare(method, train.task.num_labels)
    config = TrainConfig(epochs=EPOCHS, lr=lr, batch_size=BATCH, max_length=MAX_LENGTH, seed=seed, keep_best=False,
                         progress=args.progress, precision=args.precision)
    device = pick_device()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    if method == "hadamard2":
        result = train_two_stage(model, tokenizer, train, None, head_epochs=HEAD_EPOCHS, adapter_epochs=EPOCHS,
                                 head_lr=HEAD_LR, adapter_lr=lr, config=config)
        stats = result["adapter"]  # speed of the adapter stage; seconds below cover both stages
    else:
        stats = Trainer(model, tokenizer, train, None, config).fit()
    seconds = time.perf_counter() - started
    metrics = Trainer(model, tokenizer, evaluate_on, None, config).evaluate(evaluate_on)
    trainable, total = hl.count_parameters(model)
    record = {**job, "lr": lr, "seed": seed, "score": next(iter(metrics.values())), "metrics": metrics,
              "metric": train.task.metric, "train_examples": len(train), "eval_examples": len(evaluate_on),
              "evaluated_on": "held-out 10% of train" if job["kind"] == "grid" else "dev",
              "seconds": seconds, "samples_per_s": stats["samples_per_second"], "precision": stats["precision"],
              "device": stats["device"], "threads": torch.get_num_threads(), "trainable": trainable,
              "total_params": total, "file_bytes": file_size(model, method),
              "peak_mem_gb": torch.cuda.max_memory_allocated() / 1e9 if device.type == "cuda" else None,
              "source": train.source, "final_train_loss": stats["history"][-1]["train_loss"]}
    return record, model


def run(args) -> None:
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    tokenizer = hl.load_tokenizer()
    todo = jobs(args.methods, args.tasks, args.seeds)
    started, cache = time.perf_counter(), {}
    while True:
        runs = load_runs(out)
        waiting = False
        for job in todo:
            if job_name(job) in runs:
                continue
            lr = job["lr"] if job["kind"] == "grid" else chosen_lr(runs, job["task"], job["method"])
            if lr is None:
                waiting = True  # its grid is not finished (perhaps by another worker)
                continue
            if not claim(out, job_name(job)):
                waiting = True
                continue
            break
        else:
            if waiting and args.wait:
                time.sleep(30)
                continue
            print("nothing left to run" + (" (some runs wait on other workers)" if waiting else ""), flush=True)
            return
        try:
            if job["task"] not in cache:
                cache = {job["task"]: data_for(job["task"], args)}  # one task's data in memory at a time
            record, model = run_one(job, lr, cache[job["task"]], tokenizer, args)
            record.update({"command": " ".join(sys.argv), "torch": torch.__version__, "machine": machine_name()})
            if job["method"].startswith("hadamard"):  # grid adapters too: issue 9 ranks layers on their held-out 10%
                hl.save_adapter(model, out / "adapters" / job_name(job))
            if job["method"] == "full" and job["kind"] == "final":
                # For the attention-output analyses (RQ1, RQ2), every seed so that they have a spread.
                # 87 MB each: kept on disk, not committed. Written beside, then renamed: a folder under that
                # name is always complete, even if the worker is stopped while saving.
                folder, partial = out / "models" / job_name(job), out / "models" / (job_name(job) + ".partial")
                shutil.rmtree(partial, ignore_errors=True)
                model.save_pretrained(partial)
                shutil.rmtree(folder, ignore_errors=True)
                partial.rename(folder)
            # The run's record last: a run counts as finished only once its adapter or model is on disk.
            path = out / "runs" / f"{job_name(job)}.json"
            atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
            print(f"{job_name(job):38s} {record['metric']} {record['score']:.4f}  lr {lr:g}  "
                  f"{record['seconds'] / 60:.1f} min  {record['samples_per_s']:.0f} samples/s", flush=True)
        finally:
            (out / "claims" / (job_name(job) + ".claim")).unlink(missing_ok=True)
        if time.perf_counter() - started > args.time_budget:
            print(f"time budget of {args.time_budget:.0f} s spent; run the same command again to continue", flush=True)
            return


def machine_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    return f"CPU {platform.machine()}, {os.cpu_count()} cores"


# ---------------------------------------------------------------- tables

@functools.lru_cache(maxsize=None)  # reads the whole training set; several analyses ask for it
def majority_baseline(task: str) -> float:
    """The dev score of always predicting the training set's most common label (STS-B: the
    correlation of a constant is undefined and counted as 0)."""
    train, dev = load_glue(task, "train"), load_glue(task, "dev")
    if train.task.is_regression:
        return 0.0
    common = max(set(train.labels), key=train.labels.count)
    return next(iter(glue_metrics(task, [common] * len(dev), dev.labels).values()))


def data_kind(source: str) -> str:
    """"GLUE TSV", "hub" or the sample: where a split came from, without its path."""
    return "GLUE TSV" if source.startswith("GLUE TSV") else "hub" if source.startswith("hub") else "built-in sample"


def check_control_data(runs: dict) -> None:
    """The majority-class control must be read from the data the runs trained on: a --summarize
    without GLUE_DIR would otherwise score the built-in sample and print a wrong control."""
    for task in TASKS:
        trained = {data_kind(r["source"]) for r in runs.values() if r["task"] == task and r.get("source")}
        now = data_kind(load_glue(task, "dev").source) if trained else None
        if trained and now not in trained:
            raise SystemExit(f"the {task} runs trained on {' / '.join(sorted(trained))} data but this process reads "
                             f"{now} data for the majority-class control: set GLUE_DIR as the runs did")


def summarize(out: Path) -> dict:
    """Per method and task: chosen rate, dev scores per seed, mean and standard deviation."""
    runs = load_runs(out)
    summary = {}
    for method in METHODS:
        for task in TASKS:
            finals = sorted((r for r in runs.values() if r["task"] == task and r["method"] == method
                             and r["kind"] == "final"), key=lambda r: r["seed"])
            grid = {f"{r['lr']:g}": r["score"] for r in runs.values()
                    if r["task"] == task and r["method"] == method and r["kind"] == "grid"}
            if not finals and not grid:
                continue
            scores = [100 * r["score"] for r in finals]
            summary.setdefault(method, {})[task] = {
                "lr": finals[0]["lr"] if finals else None, "grid_held_out": grid, "scores": scores,
                "seeds": [r["seed"] for r in finals],
                "mean": statistics.mean(scores) if scores else None,
                "sd": statistics.stdev(scores) if len(scores) > 1 else None,
                "trainable": finals[0]["trainable"] if finals else None,
                "total": finals[0]["total_params"] if finals else None,
                "file_bytes": finals[0]["file_bytes"] if finals else None,
                "samples_per_s": statistics.mean(r["samples_per_s"] for r in finals) if finals else None,
                "precision": finals[0]["precision"] if finals else None,
                "threads": finals[0]["threads"] if finals else None,
                "train_examples": finals[0]["train_examples"] if finals else None,
                "command": finals[0]["command"] if finals else None, "machine": finals[0]["machine"] if finals else None}
    for method, tasks in summary.items():
        for name, keys in (("mean4", MEAN4), ("mean5", TASKS)):
            means = [tasks.get(t, {}).get("mean") for t in keys]
            tasks[name] = statistics.mean(means) if all(m is not None for m in means) else None
            tasks[name + "_by_seed"] = by_seed(tasks, keys)
    return summary


def by_seed(tasks: dict, keys) -> dict:
    """{seed: that seed's mean over the tasks ``keys``}, when every one of them has run the same seeds
    (else {}): what gives a mean over tasks its spread over seeds."""
    cells = [tasks.get(t) for t in keys]
    if not all(c and c["scores"] for c in cells) or len({tuple(c["seeds"]) for c in cells}) != 1:
        return {}
    return {str(s): statistics.mean(c["scores"][i] for c in cells) for i, s in enumerate(cells[0]["seeds"])}


def per_seed(summary: dict, method: str, key: str) -> dict:
    """{seed: score} of one task, or of a mean over tasks ("mean4", "mean5")."""
    entry = summary.get(method, {})
    if key in TASKS:
        return {str(s): v for s, v in zip(entry.get(key, {}).get("seeds", []), entry.get(key, {}).get("scores", []))}
    # A mean over tasks whose seeds differ has no per-seed values: it counts as one value.
    return entry.get(key + "_by_seed") or ({"all": entry[key]} if entry.get(key) is not None else {})


def ratio(full: dict, had: dict, control: float = 0.0) -> tuple | None:
    """(100 (h - control) / (f - control) on the means, its standard deviation over seeds or None), or None
    unless full fine-tuning gains 2 points over the control. The spread pairs seed i of full fine-tuning
    with seed i of the adapter (both draw their head and data order from it) and needs two such pairs."""
    if not full or not had:
        return None
    f, h = statistics.mean(full.values()), statistics.mean(had.values())
    if f - control < 2:
        return None
    each = seed_ratios(full, had, control)
    sd = statistics.stdev(each.values()) if len(each) > 1 else None
    return 100 * (h - control) / (f - control), sd


def seed_ratios(full: dict, had: dict, control: float = 0.0) -> dict:
    """{seed: 100 (h - control) / (f - control)} for the seeds both ran, or {} when a seed's full
    fine-tuning gains under 2 points over the control (its ratio would be noise over noise)."""
    paired = sorted(s for s in full if s in had)
    if any(full[s] - control < 2 for s in paired):
        return {}
    return {s: 100 * (had[s] - control) / (full[s] - control) for s in paired}


def ratio_cell(full: dict, had: dict, control: float = 0.0) -> str:
    """A table cell for `ratio`: "value ± sd", "value" or "-"."""
    r = ratio(full, had, control)
    return "-" if r is None else fmt(r[0]) + ("" if r[1] is None else " ± " + fmt(r[1]))


def seeds_asked(runs: dict) -> int:
    """The `--seeds` the runs were started with (the most any run's command asked for; 1 by default)."""
    asked = [int(m.group(1)) for r in runs.values() for m in [re.search(r"--seeds[ =](\d+)", r.get("command", ""))] if m]
    return max(asked, default=1)


def fmt(x, digits=1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def n_seeds(summary: dict, method: str, task: str) -> int:
    """How many final seeds a method has on a task (0 when it has none yet)."""
    return len(summary.get(method, {}).get(task, {}).get("scores", []))


def targets(summary: dict) -> list:
    """Issue 8's targets, each met, missed (by how much) or not decided yet, from the numbers alone."""
    full, had = summary.get("full", {}), summary.get("hadamard2", {})
    seeds = {f"{t} ({name})": n_seeds(summary, method, t)
             for name, method in (("full fine-tuning", "full"), ("adapter", "hadamard2")) for t in MEAN4}
    lines = []
    if full.get("mean4") is None or had.get("mean4") is None:
        lines.append("- **Target: the two-stage adapter at 99% of full fine-tuning on the mean of 4**: not decided yet "
                     "(a task of the four has no final run).")
    else:
        f4, h4 = per_seed(summary, "full", "mean4"), per_seed(summary, "hadamard2", "mean4")
        value, sd = ratio(f4, h4)
        each = seed_ratios(f4, h4)
        spread = "" if sd is None else (f" ± {sd:.1f} over {len(each)} seeds (each seed: " +
                                        ", ".join(f"{r:.1f}" for r in each.values()) + ")")
        state = ("met" if value >= 99 else f"missed by {99 - value:.1f} points") if min(seeds.values()) >= 3 else \
            f"not decided yet ({'met' if value >= 99 else f'{99 - value:.1f} points short'} so far; fewer than 3 seeds " \
            f"for {', '.join(sorted(k for k, n in seeds.items() if n < 3))})"
        tried = "" if value >= 99 else (
            f" Tried: adapter rates {', '.join(f'{lr:g}' for lr in GRIDS['hadamard2'])} chosen per task on held-out "
            f"training data, {EPOCHS} adapter epochs after {HEAD_EPOCHS} head-only epoch, the head training in stage 2 "
            "(the recipe's defaults; only the README's two-stage sweep, one seed on small subsets, tried the others).")
        one = ratio(f4, per_seed(summary, "hadamard1", "mean4")) if value < 99 else None
        if one:  # the other recipe the protocol ran at full scale
            tried += (f" The one-stage variant (adapters, LayerNorms and head trained together, same rates grid): "
                      f"{one[0]:.1f}%" + ("" if one[1] is None else f" ± {one[1]:.1f}") + ".")
        lines.append(f"- **Target: the two-stage adapter at 99% of full fine-tuning on the mean of 4 (three seeds)**: "
                     f"{value:.1f}%{spread}: {state}.{tried}")
    counted = [had[t] for t in ["sst2"] + TASKS if had.get(t, {}).get("trainable")]  # SST-2's head, as in the table
    if counted:
        share = 100 * counted[0]["trainable"] / counted[0]["total"]
        lines.append(f"- **Target: at most 0.05% of the parameters trained**: {share:.4f}%: {'met' if share <= 0.05 else 'missed'}.")
    others = ["bitfit", "layernorm", "ia3"]
    if had.get("mean4") is not None:
        cells = [f"{m} {fmt(summary.get(m, {}).get('mean4'))}" for m in others]
        done = [m for m in others if summary.get(m, {}).get("mean4") is not None]
        above = [m for m in done if had["mean4"] > summary[m]["mean4"]]
        if len(done) < len(others):
            state = "not decided yet (`-`: not run yet)"
        else:
            state = "met" if len(above) == len(others) else f"missed: not above {', '.join(m for m in done if m not in above)}"
            gaps = ", ".join(f"{m} {had['mean4'] - summary[m]['mean4']:+.1f}" for m in others)
            # a mean over three seeds against one-seed baselines: their side has no measured seed noise yet
            thin = [m for m in ["hadamard2"] + others if min(n_seeds(summary, m, t) for t in MEAN4) < 3]
            state += (f" (the adapter minus each, in points: {gaps})" +
                      (f"; preliminary: fewer than 3 seeds for {', '.join(thin)}, so a gap this size may be seed noise"
                       if thin else ""))
        lines.append(f"- **Target: above BitFit, LayerNorm only and IA3 on the mean of 4**: the adapter "
                     f"{fmt(had['mean4'])}, {', '.join(cells)}: {state}.")
    return lines


def bf16_target(runs: dict) -> list:
    """Issue 8's CPU bf16 target, where these runs cannot decide it: every CPU run trained in float32."""
    cpu = [r for r in runs.values() if r.get("device") == "cpu"]
    if not cpu or any(r.get("precision") != "fp32" for r in cpu):
        return []
    return ["- **Target: CPU bf16 at least 1.8x float32 for Hadamard training, scores inside seed noise**: not decided "
            "by these runs: they trained in float32, which `precision=\"auto\"` keeps on every CPU (the README's "
            "\"bf16 on the CPU\" says why, and measures bf16 on this project's CPU, which emulates it)."]


def minutes(runs: dict) -> str:
    """One line: the range of minutes a run took, per method and task (grid and final runs alike),
    so what the README says about the protocol's cost comes from the run files."""
    spans = {}
    for r in runs.values():
        spans.setdefault(r["method"], {}).setdefault(r["task"], []).append(r["seconds"] / 60)
    mins = lambda x: f"{x:.0f}" if x >= 1 else f"{x:.1f}"  # GPU runs take seconds
    cells = [f"{m}: " + ", ".join(f"{t} {mins(statistics.median(v))}" + (f" ({mins(min(v))}-{mins(max(v))})" if len(v) > 1 else "")
                                  for t in TASKS if (v := spans[m].get(t)))
             for m in METHODS if m in spans]
    return (f"- **Minutes per run**, median (range) over a method's grid and final runs on a task "
            "(threads per worker as counted in the results file's header; workers usually shared the machine, and a pause "
            "listed in `pauses.md`, where there is one, counts in its run's minutes, hence the odd long one): "
            + "; ".join(cells) + ".")


def write_tables(out: Path) -> str:
    summary = summarize(out)
    runs = load_runs(out)
    if not runs:
        raise SystemExit(f"no finished runs under {out / 'runs'}: run the protocol first")
    any_run = next(iter(runs.values()))
    # Runs came from several workers and sessions: say what most ran with, and how many ran otherwise.
    counted = lambda key: ", ".join(f"{v} in {n}" for v, n in Counter(str(r.get(key)) for r in runs.values()).most_common())
    command, n_command = Counter(r["command"] for r in runs.values()).most_common(1)[0]
    lines = [f"# GLUE protocol: every method at real scale ({any_run['machine']})", "",
             f"Command: `{command}` ({n_command} of the {len(runs)} runs; each worker was started with its own "
             "`--threads` and `--time-budget`, and every run records its command in `runs/*.json`).  ",
             f"torch {any_run['torch']}; model {hl.DEFAULT_MODEL} (6 layers, d=384, 22.7M parameters, float32 master "
             f"weights); precision (runs): {counted('precision')}; threads per worker (runs): {counted('threads')}; "
             "data: GLUE TSV "
             "(dev sets complete; training sets complete except SST-2: "
             f"{summary.get('full', {}).get('sst2', {}).get('train_examples') or 'see runs'} examples).  ",
             f"Protocol: rate per method and task chosen on a held-out 10% of the training set (grid trained on "
             f"the other 90%, seed 0); final runs on the whole training set at that rate, scored on the dev set "
             f"after the last epoch; {EPOCHS} epochs, batch {BATCH}, max length {MAX_LENGTH} for every method "
             f"(the two-stage recipe adds its {HEAD_EPOCHS} head-only epoch at {HEAD_LR:g}). "
             "Scores: mean ± standard deviation over seeds (n = number of seeds); MRPC F1, STS-B Pearson, "
             "CoLA Matthews, accuracy otherwise; all x100. A mean over tasks gets a ± once every one of its tasks "
             "has the same seeds (the standard deviation of the seeds' own means over tasks); a ratio to full "
             "fine-tuning is the ratio of the means, ± the standard deviation of the seeds' ratios (seed i against "
             "seed i).", "",
             "| method | " + " | ".join(TASKS) + " | mean of 4 | mean of 5 | trainable | % | file KB |",
             "|---|" + "---|" * (len(TASKS) + 5)]
    check_control_data(runs)
    majority = {t: 100 * majority_baseline(t) for t in TASKS}
    control = {**majority, "mean4": statistics.mean(majority[t] for t in MEAN4), "mean5": statistics.mean(majority.values())}
    lines.append("| majority class (control) | " + " | ".join(fmt(majority[t]) for t in TASKS) +
                 f" | {fmt(control['mean4'])} | {fmt(control['mean5'])} | 0 | 0 | 0 |")
    for method in METHODS:
        if method not in summary:
            continue
        s = summary[method]
        cells = []
        for t in TASKS:
            c = s.get(t)
            if not c or c["mean"] is None:
                cells.append("grid only" if c else "-")
            else:
                cells.append(f"{fmt(c['mean'])}" + (f" ± {fmt(c['sd'])}" if c["sd"] is not None else "") +
                             f" (n={len(c['scores'])})")
        first = next((c for c in s.values() if isinstance(c, dict) and c.get("trainable")), None)
        # Trainable counts differ by task only through the head (STS-B: 1 output); show SST-2's.
        head = s.get("sst2") if s.get("sst2", {}).get("trainable") else first
        means = [fmt(s[k]) + (f" ± {fmt(statistics.stdev(s[k + '_by_seed'].values()))}"
                              if len(s[k + "_by_seed"]) > 1 else "") for k in ("mean4", "mean5")]
        lines.append(f"| {DESCRIPTIONS[method]} | " + " | ".join(cells) + f" | {means[0]} | {means[1]} | "
                     + (f"{head['trainable']:,} | {100 * head['trainable'] / head['total']:.4f} | "
                        f"{head['file_bytes'] / 1e3:.0f} |" if head else "- | - | - |"))
    # The plain ratio, and the same ratio above the control (what each method gained over always answering the
    # majority class): where the control is near full fine-tuning (RTE, MRPC) the plain ratio is near 100% whatever
    # the adapter learned.
    def ratio_row(label: str, method: str, controls=None, bold_mean4=False) -> str:
        cells = [ratio_cell(per_seed(summary, "full", t), per_seed(summary, method, t), controls[t] if controls else 0.0)
                 for t in TASKS + ["mean4", "mean5"]]
        mean4 = f"**{cells[-2]}**" if bold_mean4 else cells[-2]
        return f"| {label} | " + " | ".join(cells[:len(TASKS)]) + f" | {mean4} | {cells[-1]} | | | |"

    lines.append(ratio_row("**Hadamard (two-stage) as % of full**", "hadamard2", bold_mean4=True))
    lines.append(ratio_row("Hadamard's gain over the majority class as % of full fine-tuning's (`-`: full gains under "
                           "2 points)", "hadamard2", controls=control))
    if "hadamard1" in summary:  # the one-stage variant, the same plain ratio
        lines.append(ratio_row("Hadamard (one stage) as % of full", "hadamard1"))
    lines += [""] + targets(summary) + bf16_target(runs) + [minutes(runs)]
    lines += ["", "Learning rates chosen on held-out training data (held-out score per rate, x100):", "",
              "| method | " + " | ".join(TASKS) + " |", "|---|" + "---|" * len(TASKS)]
    for method in METHODS:
        if method not in summary:
            continue
        cells = []
        for t in TASKS:
            c = summary[method].get(t)
            if not c or not c["grid_held_out"]:
                cells.append("-")
                continue
            best = chosen_lr(runs, t, method)
            cells.append(", ".join(("**" if best is not None and float(lr) == best else "") + f"{lr}: {100 * v:.1f}" +
                                   ("**" if best is not None and float(lr) == best else "")
                                   for lr, v in sorted(c["grid_held_out"].items(), key=lambda kv: float(kv[0]))))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    lines += ["", "The paper's BERT-base row (GLUE dev, as cited by AdaKron; `../shared/PAPER.md`). BERT-base has "
              "110M parameters and 12 layers of width 768; ours is MiniLM, 22.7M parameters, 6 layers of width 384, "
              "distilled and then trained for sentence embeddings, so absolute scores are lower and are not "
              "comparable; the ratios are what to compare.", "",
              "| paper, BERT-base | " + " | ".join(TASKS) + " | mean of 4 | % of full (mean of 4) |",
              "|---|" + "---|" * (len(TASKS) + 2)]
    paper_full4 = statistics.mean(PAPER["full"][t] for t in MEAN4)
    for method, row in PAPER.items():
        m4 = statistics.mean(row[t] for t in MEAN4)
        lines.append(f"| {method} | " + " | ".join(fmt(row[t]) for t in TASKS) + f" | {fmt(m4)} | {fmt(100 * m4 / paper_full4)} |")
    seeds = seeds_asked(runs)
    planned = len(jobs(METHODS, TASKS, seeds))
    lines += ["", f"Runs finished: {len(runs)} of the {planned} that the runs' command makes (`--seeds {seeds}`): 8 methods "
              f"x 5 tasks x 3 grid rates, then 3 seeds for full fine-tuning and both Hadamard variants and {seeds} for "
              "the others. `grid only` marks a task whose grid has finished runs but no final run."]
    text = "\n".join(lines) + "\n"
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(text))
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1) + "\n"))
    if out.resolve().parent == (ROOT / "results").resolve():
        # A copy inside the package, for notebook 03 on Colab (where only the package is installed).
        packaged = {"source": f"results/{out.name}/summary.json", "machine": any_run["machine"],
                    "precision": any_run["precision"], "runs_finished": len(runs),
                    "runs_planned": planned, "majority_class": majority, "summary": summary}
        atomic_write(ROOT / "hadamard_lite" / "measured" / f"{out.name}.json",
                     lambda tmp: Path(tmp).write_text(json.dumps(packaged, indent=1) + "\n"))
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/glue_protocol_cpu")
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    parser.add_argument("--seeds", type=int, default=1, help="seeds for the methods other than full and Hadamard (they get 3)")
    parser.add_argument("--sst2-limit", type=int, default=20000, help="SST-2 training examples (0: all 67,349)")
    parser.add_argument("--limit", type=int, default=0, help="cap every training and dev set (smoke tests only)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--time-budget", type=float, default=math.inf, help="seconds after which no run is started")
    parser.add_argument("--wait", action="store_true", help="wait for other workers' grids instead of stopping")
    parser.add_argument("--progress", action="store_true", help="progress bars for every epoch")
    parser.add_argument("--summarize", action="store_true", help="only write results.md from the finished runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.summarize:
        run(args)
    print(write_tables(Path(args.out)))


if __name__ == "__main__":
    main()
