"""The paper's findings about tuning patterns, tested on adapters that learned, with controls and seeds
(issue 9). Reads the real-scale GLUE protocol's runs (chosen rates, saved adapters, fully fine-tuned
models) and adds its own training runs; resumable and shared by several workers like the protocol.

    GLUE_DIR=../shared/glue_data python benchmarks/patterns.py --protocol results/glue_protocol_cpu \\
        --out results/patterns_cpu --threads 1 --wait          # train (run two workers on two cores)
    GLUE_DIR=../shared/glue_data python benchmarks/patterns.py --protocol results/glue_protocol_cpu \\
        --out results/patterns_cpu --analyse                   # the analyses and tables, from what is there

Training runs (every one the library's two-stage recipe at the rate the protocol chose for
"hadamard2" on its held-out 10%, same epochs, batch and length; scored on the full dev set):
- parts: stage 2 trains only W, only b, only the post-attention LayerNorm, or W and b (the protocol's
  hadamard2 runs are "all three"; its head-only runs are the floor).
- shuffled: the same recipe on training labels shuffled by a seeded permutation: adapters that cannot
  have learned the task, the noise floor for the similarity of adapters.
- pruned: adapters on only the k most important layers (k = 4, 2), retrained; layers ranked by the drop
  on the held-out 10% when one layer of the protocol's grid adapter (trained on the other 90%) is reset.
- shared: one-stage multi-task training of all five tasks, each with its own head, with adapters and
  LayerNorms shared in no layer ("none"), the lower half ("half": MiniLM's layers 0-2) or every layer ("all");
  lr 1e-2, 3 epochs, SST-2 cut to 5,000 examples to fit the CPU.
Seeds: three for RTE, MRPC and STS-B (the issue's minimum), one for CoLA and SST-2 first (--seeds-all 3
adds the rest); the shared study runs three seeds. A task on which the protocol's two-stage Hadamard run did
not beat the majority class (RTE on MiniLM) has its jobs run last: its adapters have the least to teach.

Analyses (no training, --analyse):
- similarity: cosines of W - 1, b and the LayerNorm changes, per layer, between tasks, between seeds of
  one task, against shuffled-label adapters and random vectors of the same size;
- parts, pruning (post-hoc, keeping the top-k or, as the control, the bottom-k layers, and retrained),
  shared adapters: dev scores, mean and standard deviation over seeds, with parameter counts;
- RQ1 and RQ2 on every fully fine-tuned model of the protocol (one per task and seed): norms and relative change of
  the attention outputs per layer; R² of identity, element-wise, quadratic and full linear maps on the
  outputs and on the change, fitted on the first half of the dev tokens and scored on the second.
"""
import argparse
import collections
import dataclasses
import functools
import hashlib
import inspect
import itertools
import json
import math
import random
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import glue_protocol as protocol  # noqa: E402
import hadamard_lite as hl  # noqa: E402
from hadamard_lite import analysis  # noqa: E402
from hadamard_lite.adapter_files import atomic_write, read_adapter_config  # noqa: E402
from hadamard_lite.data import batches, load_glue  # noqa: E402
from hadamard_lite.inference import predictions  # noqa: E402
from hadamard_lite.metrics import glue_metrics  # noqa: E402
from hadamard_lite.trainer import TrainConfig, pick_device, train_two_stage  # noqa: E402

TASKS = protocol.TASKS
SEEDED = ["rte", "mrpc", "stsb"]  # three seeds at least (the issue); CoLA and SST-2 one first
PARTS = {"W": ("weight",), "b": ("bias",), "LN": ("layernorm",), "Wb": ("weight", "bias")}
KEEP = (4, 2)  # of 6 layers: MiniLM's counterpart of the paper's 8 of 12, and a harder cut
SHARED = ("none", "half", "all")  # layers shared: none, the lower half, all of them
SHARED_WHAT = {"half": "the lower half of the layers", "all": "every layer"}  # how a verdict names a variant
SHARED_LR, SHARED_SST2_LIMIT = 1e-2, 5000
SHARED_PRECISION = "fp32"  # analysis.train_multitask trains in float32 (no autocast); older shared runs did not say so
MARGIN = 0.01  # the smallest difference a verdict counts (1 point, or 0.01 of a cosine), whatever the seeds say
# Two random 4-of-6 layer sets share 2.67 layers on average; top-4 sets sharing less than half a layer more
# than that are "no more than chance" (one task pair in two agreeing on one more layer is not a pattern).
CHANCE_OVERLAP = 0.5
COMPONENTS = {"w": "W - 1", "b": "b", "ln_weight": "LayerNorm gamma change", "ln_bias": "LayerNorm beta change"}


# ---------------------------------------------------------------- the jobs

def jobs(tasks, seeds_all: int) -> list:
    """Seed 0 of everything first (so every question has an answer early), then the other seeds."""
    def seeds(task):
        return range(max(3 if task in SEEDED else 1, seeds_all))

    out = []
    for seed in range(3):
        for task in tasks:
            if seed not in seeds(task):
                continue
            out += [{"kind": "parts", "task": task, "variant": v, "seed": seed} for v in PARTS]
            out += [{"kind": "shuffled", "task": task, "variant": "labels", "seed": seed}]
            out += [{"kind": "pruned", "task": task, "variant": f"keep{k}", "seed": seed} for k in KEEP]
        out += [{"kind": "shared", "task": "all", "variant": v, "seed": seed} for v in SHARED]
    return out


def job_name(job: dict) -> str:
    return f"{job['task']}_{job['kind']}_{job['variant']}_seed{job['seed']}"


def protocol_rate(protocol_runs: dict, task: str):
    return protocol.chosen_lr(protocol_runs, task, "hadamard2")


def layer_ranking(args, task: str, data: dict, tokenizer, protocol_runs: dict):
    """Layers from most to least important for ``task``, by the held-out drop when one layer of the
    protocol's grid adapter at the chosen rate is reset. Computed once and kept (a file per task)."""
    path = Path(args.out) / "rankings" / f"{task}.json"
    if path.exists():
        return json.loads(path.read_text())
    lr = protocol_rate(protocol_runs, task)
    folder = Path(args.protocol) / "adapters" / f"{task}_hadamard2_grid_lr{lr:g}"
    if lr is None or not folder.is_dir():
        return None
    model = hl.load_adapter(hl.load_model(num_labels=data["train"].task.num_labels), folder)
    pretrained = hl.load_model(num_labels=data["train"].task.num_labels)
    held_out = data["held_out"]

    rows = analysis.layer_importance(model, pretrained, lambda m: dev_score(m, task, held_out, tokenizer))
    record = {"task": task, "adapter": folder.as_posix(), "scored_on": f"held-out 10% of train ({len(held_out)})",
              "order": [r["layer"] for r in rows], "drops": {str(r["layer"]): r["drop"] for r in rows}}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
    return record


def shuffled(split, seed: int):
    """The same split with its labels permuted (seeded): same label counts, no link to the text."""
    labels = list(split.labels)
    random.Random(1000 + seed).shuffle(labels)
    return dataclasses.replace(split, labels=labels)


def train_one(job, lr, data, tokenizer, args, layers=None):
    task, seed = job["task"], job["seed"]
    train = shuffled(data["train"], seed) if job["kind"] == "shuffled" else data["train"]
    torch.manual_seed(seed)
    model = hl.load_model(num_labels=train.task.num_labels)
    config = TrainConfig(epochs=protocol.EPOCHS, lr=lr, batch_size=protocol.BATCH, max_length=protocol.MAX_LENGTH,
                         seed=seed, keep_best=False, progress=args.progress, precision=args.precision)
    parts = PARTS.get(job["variant"], ("weight", "bias", "layernorm"))
    result = train_two_stage(model, tokenizer, train, None, head_epochs=protocol.HEAD_EPOCHS,
                             adapter_epochs=protocol.EPOCHS, head_lr=protocol.HEAD_LR, adapter_lr=lr,
                             layers=layers, parts=parts, config=config)
    dev = data["dev"]
    score = dev_score(model, task, dev, tokenizer)
    trainable_stage2 = sum(p.numel() for n, p in model.named_parameters()
                           if p.requires_grad and n not in hl.head_parameters(model))
    return model, {"score": score, "lr": lr, "parts": list(parts), "layers": hl.adapted_layers(model),
                   "stage2_params_without_head": trainable_stage2, "precision": result["adapter"]["precision"],
                   "samples_per_s": result["adapter"]["samples_per_second"]}


def shared_layers(variant: str, num_layers: int) -> list:
    return {"none": [], "half": list(range(num_layers // 2)), "all": list(range(num_layers))}[variant]


def train_shared(job, args, tokenizer):
    seed = job["seed"]
    train, dev = {}, {}
    for task in TASKS:
        limit = SHARED_SST2_LIMIT if task == "sst2" else None
        if args.limit:
            limit = min(limit or args.limit, args.limit)
        train[task] = load_glue(task, "train", limit=limit, seed=0)
        dev[task] = load_glue(task, "dev", limit=args.limit or None, seed=0)
    torch.manual_seed(seed)
    models = {}
    for task in TASKS:
        model = hl.add_hadamard_adapter(hl.load_model(num_labels=train[task].task.num_labels))
        models[task] = hl.freeze_for_stage(model, "adapter", train_head=True)
    num_layers = len(hl.adapted_layers(next(iter(models.values()))))
    layers = shared_layers(job["variant"], num_layers)
    if layers:
        analysis.share_adapters(models, layers)
    result = analysis.train_multitask(models, tokenizer, train, dev, epochs=protocol.EPOCHS, lr=SHARED_LR,
                                      batch_size=protocol.BATCH, seed=seed, progress=args.progress)
    d = next(iter(models.values())).config.hidden_size
    per_task_layers = num_layers - len(layers)
    return {"scores": result["scores"], "commonest_prediction": result["commonest_prediction"], "lr": SHARED_LR,
            "shared_layers": layers,
            "adapter_params_all_tasks": 4 * d * (len(layers) + per_task_layers * len(TASKS)),
            "train_examples": {t: len(s) for t, s in train.items()}, "precision": SHARED_PRECISION}


def did_not_learn(protocol_runs: dict, task: str) -> bool:
    """True once the protocol's two-stage Hadamard seed 0 on ``task`` has failed to beat the majority class
    by 2 points (RTE on MiniLM): the study then runs that task's jobs last, as they can teach the least."""
    record = protocol_runs.get(f"{task}_hadamard2_final_seed0")
    if record is None:
        return False
    return record["score"] - protocol.majority_baseline(task) <= 2 * MARGIN


def run(args) -> None:
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    tokenizer = hl.load_tokenizer()
    todo = [j for j in jobs(args.tasks, args.seeds_all) if j["kind"] in args.kinds]
    started, cache, skipped = time.perf_counter(), {}, set()
    while True:
        runs, protocol_runs = protocol.load_runs(out), protocol.load_runs(Path(args.protocol))
        waiting, job, lr = False, None, None
        ordered = sorted(todo, key=lambda j: j["kind"] != "shared" and did_not_learn(protocol_runs, j["task"]))  # stable
        for candidate in ordered:
            if job_name(candidate) in runs or job_name(candidate) in skipped:
                continue
            if candidate["kind"] != "shared":
                lr = protocol_rate(protocol_runs, candidate["task"])
                if lr is None:  # the protocol's grid for this task is not finished yet
                    waiting = True
                    continue
            if not protocol.claim(out, job_name(candidate)):
                waiting = True
                continue
            job = candidate
            break
        if job is None:
            if waiting and args.wait:
                time.sleep(60)
                continue
            print("nothing left to run" + (" (some runs wait on the protocol or on other workers)" if waiting else ""))
            return
        claim_file = out / "claims" / (job_name(job) + ".claim")
        try:
            began = time.perf_counter()
            if job["kind"] == "shared":
                record, model = train_shared(job, args, tokenizer), None
            else:
                if job["task"] not in cache:
                    cache = {job["task"]: protocol.data_for(job["task"], args)}
                layers = None
                if job["kind"] == "pruned":
                    ranking = layer_ranking(args, job["task"], cache[job["task"]], tokenizer, protocol_runs)
                    if ranking is None:
                        print(f"{job_name(job)}: the protocol has no grid adapter for {job['task']} (runs from before "
                              "grid adapters were kept?); skipped")
                        skipped.add(job_name(job))
                        continue
                    layers = sorted(ranking["order"][:int(job["variant"][4:])])
                model, record = train_one(job, lr, cache[job["task"]], tokenizer, args, layers)
            record.update({**job, "seconds": time.perf_counter() - began, "threads": torch.get_num_threads(),
                           "device": str(pick_device()), "command": " ".join(sys.argv), "torch": torch.__version__,
                           "machine": protocol.machine_name()})
            if model is not None:
                hl.save_adapter(model, out / "adapters" / job_name(job))
            path = out / "runs" / f"{job_name(job)}.json"
            atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1) + "\n"))
            score = record.get("score", statistics.mean(record.get("scores", {0: math.nan}).values()))
            print(f"{job_name(job):34s} {score:.4f}  {record['seconds'] / 60:.1f} min", flush=True)
        finally:
            claim_file.unlink(missing_ok=True)
        if time.perf_counter() - started > args.time_budget:
            print("time budget spent; run the same command again to continue")
            return


# ---------------------------------------------------------------- analyses

def _cos(x, y) -> float:
    d = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / d) if d else 0.0


def _spread(values) -> dict:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def load_adapters(folders: dict, pretrained) -> dict:
    """{key: pattern_vectors} for every adapter folder that exists."""
    out = {}
    for key, folder in folders.items():
        if (Path(folder) / "adapter_config.json").exists():
            config = read_adapter_config(folder)
            model = hl.load_adapter(hl.load_model(num_labels=config.get("num_labels") or 2), folder)
            out[key] = analysis.pattern_vectors(model, pretrained)
    return out


def similarity(args, pretrained) -> dict:
    """Per component and layer: cosine groups (same task, other task, shuffled labels, random)."""
    p, o = Path(args.protocol) / "adapters", Path(args.out) / "adapters"
    real = load_adapters({(t, s): p / f"{t}_hadamard2_final_seed{s}" for t in TASKS for s in range(3)}, pretrained)
    noise = load_adapters({(t, s): o / f"{t}_shuffled_labels_seed{s}" for t in TASKS for s in range(3)}, pretrained)
    if len(real) < 2:
        return {}
    layers = next(iter(real.values()))["layers"]
    d = next(iter(real.values()))["w"].shape[1]
    rng = np.random.default_rng(0)
    random_pairs = [_cos(rng.normal(size=d), rng.normal(size=d)) for _ in range(2000)]
    groups = {
        "same task, other seed": [(a, b) for a, b in itertools.combinations(real, 2) if a[0] == b[0]],
        "other task": [(a, b) for a, b in itertools.combinations(real, 2) if a[0] != b[0]],
        "task vs its shuffled-label adapter": [(a, b) for a in real for b in noise if a[0] == b[0]],
        "shuffled labels, other task": [(a, b) for a, b in itertools.combinations(noise, 2) if a[0] != b[0]],
    }
    vectors = {**{("real",) + k: v for k, v in real.items()}, **{("noise",) + k: v for k, v in noise.items()}}
    kinds = {"same task, other seed": ("real", "real"), "other task": ("real", "real"),
             "task vs its shuffled-label adapter": ("real", "noise"), "shuffled labels, other task": ("noise", "noise")}
    result = {"layers": layers, "hidden": d, "adapters": sorted(f"{t}_seed{s}" for t, s in real),
              "shuffled_adapters": sorted(f"{t}_seed{s}" for t, s in noise),
              "random_95": float(np.percentile(np.abs(random_pairs), 95)), "components": {}}
    for key in COMPONENTS:
        per, all_pairs = {}, []
        for group, pairs in groups.items():
            ka, kb = kinds[group]
            joined = [{"a": f"{a[0]}_seed{a[1]}", "b": f"{b[0]}_seed{b[1]}", "group": group,
                       "cos": _cos(vectors[(ka,) + a][key].ravel(), vectors[(kb,) + b][key].ravel())} for a, b in pairs]
            all_pairs += joined
            per[group] = {"all_layers": _spread([pair["cos"] for pair in joined]),
                          "per_layer": [_spread([_cos(vectors[(ka,) + a][key][i], vectors[(kb,) + b][key][i])
                                                 for a, b in pairs]) for i in range(len(layers))]}
        per["random vectors"] = {"all_layers": _spread([_cos(rng.normal(size=d * len(layers)),
                                                            rng.normal(size=d * len(layers))) for _ in range(500)]),
                                 "per_layer": [_spread(random_pairs)] * len(layers)}
        per["pairs"] = all_pairs  # every pair's cosine of all layers joined, for the bootstrap intervals
        result["components"][key] = per
    return result


def dev_score(model, task, dev, tokenizer) -> float:
    """The task's main metric of ``model`` on the split ``dev`` (a dev set or the held-out part of train)."""
    return next(iter(glue_metrics(task, predictions(model, tokenizer, dev), dev.labels).values()))


def pruning(args, pretrained_for, tokenizer) -> dict:
    """Post-hoc pruning of the protocol's final adapters by the held-out ranking (top-k kept) and the
    control (bottom-k kept), and the retrained pruned runs."""
    out, runs = {}, protocol.load_runs(Path(args.out))
    for task in TASKS:
        path = Path(args.out) / "rankings" / f"{task}.json"
        if not path.exists():
            continue
        ranking = json.loads(path.read_text())
        dev = load_glue(task, "dev", limit=args.limit or None, seed=0)
        rows = {"ranking": ranking["order"], "drops_held_out": ranking["drops"]}
        finals = [Path(args.protocol) / "adapters" / f"{task}_hadamard2_final_seed{s}" for s in range(3)]
        finals = [f for f in finals if f.is_dir()]
        variants = {"all": ranking["order"]}
        for k in KEEP:  # the top-k by the held-out ranking, and the bottom-k as the control
            variants[f"top{k}"], variants[f"bottom{k}"] = ranking["order"][:k], ranking["order"][-k:]
        for label, keep in variants.items():
            scores = []
            for folder in finals:
                model = hl.load_adapter(hl.load_model(num_labels=dev.task.num_labels), folder)
                analysis.prune_layers(model, pretrained_for(dev.task.num_labels), keep)
                scores.append(dev_score(model, task, dev, tokenizer))
            rows[f"post-hoc {label}"] = _spread(scores) | {"layers": sorted(keep)}
        for k in KEEP:
            rows[f"retrained top{k}"] = _spread([r["score"] for r in runs.values()
                                                 if r.get("kind") == "pruned" and r["task"] == task and r["variant"] == f"keep{k}"])
        out[task] = rows
    orders = {t: r["ranking"] for t, r in out.items()}
    if len(orders) > 1:
        out["_agreement"] = _agreement(orders)
    return out


def _previous_rq(out: str, settings: dict) -> dict:
    """The RQ entries of the last analysis in ``out``, in today's format, if it used the same settings."""
    path = Path(out) / "results.json"
    previous = json.loads(path.read_text()).get("rq", {}) if path.exists() else {}
    kept = {}
    for task, entry in previous.items():
        if entry.get("settings", settings) != settings:  # other dev limit or token count: not comparable
            continue
        if "models" not in entry and "layers" in entry:  # the format before several seeds: seed 0's model
            entry = {"metric": entry.get("metric"), "majority": entry["majority"],
                     "models": [{"seed": 0, "dev_score_of_model": entry.get("dev_score_of_model"),
                                 "dev_score": entry["dev_score"], "learned": entry["learned"], "layers": entry["layers"]}]}
        kept[task] = entry
    return kept


@functools.cache
def _code_hash() -> str:
    """The code that measures RQ numbers (``analysis.py``, ``rq``, ``dev_score``) and torch's version, hashed."""
    code = Path(analysis.__file__).read_text() + inspect.getsource(rq) + inspect.getsource(dev_score) + torch.__version__
    return hashlib.sha256(code.encode()).hexdigest()[:16]


def _stamp(folder: Path) -> str:
    """What an RQ entry was measured from: the model file (size, time written) and the measuring code.
    A later ``--analyse`` reuses the entry while the stamp is the same (measuring 15 models takes most of
    its minutes); any change measures again."""
    weights = next(folder.glob("model.safetensors"), None) or next(folder.glob("*.bin"))
    return f"{weights.stat().st_size}-{weights.stat().st_mtime_ns}-{_code_hash()}"


def rq(args, tokenizer) -> dict:
    """RQ1 and RQ2 on the protocol's fully fine-tuned models: per task, one entry per seed. The models are
    git-ignored and live only on the machine that trained them: a seed whose model is not on disk keeps
    the numbers of the previous analysis (marked ``reused``) if it used the same settings, so an analysis
    elsewhere loses nothing. A model on disk is measured again only if it or the code changed (``_stamp``)."""
    from transformers import AutoModelForSequenceClassification
    out = {}
    protocol_runs = protocol.load_runs(Path(args.protocol))
    settings = {"limit": args.limit or None, "rq_tokens": args.rq_tokens}
    previous = _previous_rq(args.out, settings)
    for task in TASKS:
        folders = {}
        for folder in (Path(args.protocol) / "models").glob(f"{task}_full_final_seed*"):
            found = re.fullmatch(rf"{task}_full_final_seed(\d+)", folder.name)  # not a ".partial" save in progress
            if found and (folder / "config.json").exists():
                folders[int(found.group(1))] = folder
        old = {m["seed"]: m for m in previous.get(task, {}).get("models", [])}
        reused = [{**m, "reused": True} for seed, m in old.items() if seed not in folders]
        # A model on disk whose file and measuring code are those of the last analysis: its numbers stand.
        stamps = {seed: _stamp(folder) for seed, folder in folders.items()}
        fresh = {seed: folder for seed, folder in folders.items() if old.get(seed, {}).get("stamp") != stamps[seed]}
        majority, models = protocol.majority_baseline(task), [old[seed] for seed in folders if seed not in fresh]
        if not fresh:
            if reused or models:
                out[task] = {**previous[task], "models": sorted(models + reused, key=lambda m: m["seed"]),
                             "settings": settings}
            continue
        dev = load_glue(task, "dev", limit=args.limit or None, seed=0)
        make = lambda: batches(dev, tokenizer, 32, max_length=protocol.MAX_LENGTH)
        pre = hl.load_model(num_labels=dev.task.num_labels).eval()
        # The pre-trained attention outputs do not depend on the head: captured once for every seed.
        before = analysis.capture_attention_outputs(pre, make(), max_tokens=args.rq_tokens)
        for seed, folder in sorted(fresh.items()):
            tuned = AutoModelForSequenceClassification.from_pretrained(folder, dtype=torch.float32).eval()
            after = analysis.capture_attention_outputs(tuned, make(), max_tokens=args.rq_tokens)
            measured = dev_score(tuned, task, dev, tokenizer)  # on the dev set the maps are fitted on
            models.append({"seed": seed, "dev_score_of_model": protocol_runs.get(folder.name, {}).get("score"),
                           "dev_score": measured, "stamp": stamps[seed],
                           # a model that did not beat the majority class by 2 points says little about fine-tuning
                           "learned": measured - majority > 2 * MARGIN,
                           "layers": [analysis.fit_attention_maps(b, a) for b, a in zip(before, after)]})
        out[task] = {"metric": dev.task.metric, "majority": majority, "settings": settings,
                     "models": sorted(models + reused, key=lambda m: m["seed"])}
    return out


def parts_table(args) -> dict:
    runs, protocol_runs = protocol.load_runs(Path(args.out)), protocol.load_runs(Path(args.protocol))
    table = {}
    for task in TASKS:
        row = {v: _spread([r["score"] for r in runs.values() if r.get("kind") == "parts" and r["task"] == task
                           and r["variant"] == v]) for v in PARTS}
        row["all (protocol hadamard2)"] = _spread([r["score"] for r in protocol_runs.values() if r["task"] == task
                                                   and r["method"] == "hadamard2" and r["kind"] == "final"])
        row["head only (protocol)"] = _spread([r["score"] for r in protocol_runs.values() if r["task"] == task
                                               and r["method"] == "head" and r["kind"] == "final"])
        row["shuffled labels"] = _spread([r["score"] for r in runs.values() if r.get("kind") == "shuffled"
                                          and r["task"] == task])
        table[task] = row
    return table


def shared_table(args) -> dict:
    runs = [r for r in protocol.load_runs(Path(args.out)).values() if r.get("kind") == "shared"]
    return {v: {"scores": {t: _spread([r["scores"][t] for r in runs if r["variant"] == v]) for t in TASKS},
                "adapter_params_all_tasks": next((r["adapter_params_all_tasks"] for r in runs if r["variant"] == v), None),
                "shared_layers": next((r["shared_layers"] for r in runs if r["variant"] == v), None),
                # runs that gave every dev example of a task one class (recorded since commit 3974db9)
                "one_answer": sorted(f"{t} seed {r['seed']}" for r in runs if r["variant"] == v
                                     for t, share in (r.get("commonest_prediction") or {}).items() if share == 1.0),
                "recorded": sum("commonest_prediction" in r for r in runs if r["variant"] == v)} for v in SHARED}


def analyse(args) -> dict:
    protocol.check_control_data(protocol.load_runs(Path(args.protocol)))  # the majority class from the runs' data
    tokenizer = hl.load_tokenizer()
    pretrained = {}

    def pretrained_for(num_labels):
        return pretrained.setdefault(num_labels, hl.load_model(num_labels=num_labels))
    result = {"command": " ".join(sys.argv), "machine": protocol.machine_name(), "threads": torch.get_num_threads(),
              "torch": torch.__version__, "protocol": args.protocol,
              "similarity": similarity(args, pretrained_for(2)), "parts": parts_table(args),
              "pruning": pruning(args, pretrained_for, tokenizer), "shared": shared_table(args),
              "rq": rq(args, tokenizer), "learned": learned(args),
              "precision": sorted({r.get("precision", SHARED_PRECISION if r.get("kind") == "shared" else "?")
                                   for folder in (args.out, args.protocol)
                                   for r in protocol.load_runs(Path(folder)).values()})}
    return write(result, Path(args.out))


def render(args) -> dict:
    """Conclusions and tables anew from a saved ``results.json``, for a change to their wording or rules:
    the same measurements, so seconds instead of ``--analyse``'s minutes."""
    path = Path(args.out) / "results.json"
    if not path.exists():
        sys.exit(f"{path} not found: run --analyse first")
    result = json.loads(path.read_text())
    result["rendered_by"] = " ".join(sys.argv)  # beside "command", which measured the numbers
    return write(result, Path(args.out))


def write(result: dict, out: Path) -> dict:
    result["conclusions"] = conclusions(result)
    out.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(result, indent=1, default=float) + "\n"
    atomic_write(out / "results.json", lambda tmp: Path(tmp).write_text(payload))
    if out.resolve().parent == (protocol.ROOT / "results").resolve():
        # A copy inside the package: notebooks 05 and 06 read it on Colab, where only the package is installed.
        atomic_write(protocol.ROOT / "hadamard_lite" / "measured" / f"{out.name}.json",
                     lambda tmp: Path(tmp).write_text(payload))
    text = tables(result)
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(text))
    return result


# ---------------------------------------------------------------- conclusions

def learned(args) -> dict:
    """Per task: the protocol's two-stage Hadamard and full fine-tuning dev scores against the majority
    class. A task's adapters carry something to compare only if Hadamard beat the majority class by
    2 points and by twice its seeds' standard deviation."""
    runs, out = protocol.load_runs(Path(args.protocol)), {}
    for task in TASKS:
        finals = {m: _spread([r["score"] for r in runs.values() if r["task"] == task and r["method"] == m
                              and r["kind"] == "final"]) for m in ("hadamard2", "full")}
        if not finals["hadamard2"]["n"]:
            continue
        majority = protocol.majority_baseline(task)
        h = finals["hadamard2"]
        out[task] = {**finals, "majority": majority, "learned": h["mean"] - majority > max(2 * MARGIN, 2 * h["sd"])}
    return out


def _task(name: str) -> str:
    return name.rsplit("_seed", 1)[0]


def _agreement(orders: dict) -> dict:
    """How alike several tasks' layer rankings are: Spearman of the ranks and the overlap of the top 4."""
    from scipy.stats import spearmanr
    pairs = list(itertools.combinations(orders, 2))
    return {"spearman": _spread([spearmanr([orders[a].index(i) for i in orders[a]],
                                           [orders[b].index(i) for i in orders[a]])[0] for a, b in pairs]),
            "top4_overlap": _spread([len(set(orders[a][:4]) & set(orders[b][:4])) for a, b in pairs]),
            "top4_overlap_by_chance": 4 * 4 / 6}


def _interval(pairs: list, same_task: bool, draws: int = 1000) -> tuple | None:
    """A 95% bootstrap interval of the mean cosine of ``pairs`` (dicts with "a", "b", "cos"), resampling each task's
    adapters (its seeds) with replacement: how far the mean could move with other seeds. Pairs share adapters, so
    their standard deviation is a spread, not an interval. None when too few pairs, or when a task has one adapter
    (seed): every draw keeps it, so the interval would leave out that task's seed noise and look narrower than it is."""
    cos = {frozenset((p["a"], p["b"])): p["cos"] for p in pairs}
    by_task = {}
    for p in pairs:
        for name in (p["a"], p["b"]):
            by_task.setdefault(_task(name), set()).add(name)
    by_task = {t: sorted(names) for t, names in by_task.items()}
    if len(pairs) < 2 or (not same_task and len(by_task) < 2) or any(len(n) < 2 for n in by_task.values()):
        return None
    rng, means = np.random.default_rng(0), []
    for _ in range(draws):
        drawn = {t: [names[i] for i in rng.integers(len(names), size=len(names))] for t, names in by_task.items()}
        if same_task:
            values = [cos[frozenset((x, y))] for names in drawn.values() for x, y in itertools.combinations(names, 2)
                      if x != y and frozenset((x, y)) in cos]
        else:
            values = [cos[frozenset((x, y))] for t, u in itertools.combinations(drawn, 2)
                      for x in drawn[t] for y in drawn[u] if frozenset((x, y)) in cos]
        if values:
            means.append(statistics.mean(values))
    return (float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))) if means else None


def _gap(a: dict, b: dict) -> float:
    """The difference two means must exceed to count: 2 standard deviations of the noisier one, at least MARGIN."""
    return max(MARGIN, 2 * max(a.get("sd", 0.0), b.get("sd", 0.0)))


def _pruning_cost(rows: dict, k: int):
    """Points lost by retraining on the top k layers instead of all 6, per task that has such a run; the
    tasks where the loss exceeds ``_gap``; and the groups the test rested on (for ``_few`` and ``_noise``)."""
    have = {t: r for t, r in rows.items() if r.get(f"retrained top{k}", {}).get("n")}
    loss = {t: r["post-hoc all"]["mean"] - r[f"retrained top{k}"]["mean"] for t, r in have.items()}
    dear = [t for t, r in have.items() if loss[t] > _gap(r["post-hoc all"], r[f"retrained top{k}"])]
    return loss, dear, [g for r in have.values() for g in (r["post-hoc all"], r[f"retrained top{k}"])]


def _ranking_control(rows: dict, k: int):
    """Post-hoc top k against bottom k, per task that has both; and the tasks where the top k wins beyond ``_gap``."""
    pairs = {t: (r[f"post-hoc top{k}"], r[f"post-hoc bottom{k}"]) for t, r in rows.items()
             if r.get(f"post-hoc top{k}", {}).get("n") and r.get(f"post-hoc bottom{k}", {}).get("n")}
    return pairs, [t for t, (a, b) in pairs.items() if a["mean"] - b["mean"] > _gap(a, b)]


def _points(loss: dict) -> str:
    return ", ".join(f"{t} {100 * v:+.1f}" for t, v in loss.items())


def _few(*groups) -> str:
    """A prefix for a verdict resting on fewer than three seeds somewhere: its '2 sd' means little yet."""
    n = min(g.get("n", 0) for g in groups) if groups else 0
    return "" if n >= 3 else f"preliminary ({n} seed{'s' if n != 1 else ''} in some group): "


def _noise(*groups) -> str:
    """What a difference was tested against. With one seed a group has no spread (its sd reads 0), so the
    test was 2 sd of the other side or the 1-point floor: the verdict must not claim a measured noise."""
    if all(g.get("n", 0) >= 2 for g in groups):
        return "the noise"
    return "the noise (2 sd where a group has seeds, at least 1 point; a one-seed group has no spread)"


def conclusions(result: dict) -> list:
    """Each of the paper's findings as one line: the verdict, the numbers behind it and the control it
    was tested against. Verdicts keep to the tasks that learned (see ``learned``) and name the tasks
    they cover; a difference counts only beyond ``_gap`` (2 sd of the noisier side, at least 1 point);
    a verdict resting on fewer than three seeds says "preliminary". The rules are the ones written
    here, applied to whatever results exist, so a rerun that changes a number can change a verdict."""
    learn = result.get("learned", {})
    if not learn:
        return ["**Not measured yet**: the protocol has no final two-stage Hadamard run to study."]
    ok = [t for t, r in learn.items() if r["learned"]]
    left_out = [t for t in learn if t not in ok]
    lines = ["**Which tasks learned**: two-stage Hadamard (the protocol's final runs) against the majority class: " +
             "; ".join(f"{t} {fmt(r['hadamard2'])} vs {100 * r['majority']:.1f}" for t, r in learn.items()) +
             f". The verdicts on adapters below use {', '.join(ok) or 'no task'}" +
             (f"; left out, as they did not beat the majority class by 2 points and 2 sd: {', '.join(left_out)}."
              if left_out else ".")]
    both_ok = lambda p: _task(p["a"]) in ok and _task(p["b"]) in ok

    sim = result.get("similarity") or {}
    for key, label in COMPONENTS.items():
        topic = f"**Shared patterns ({label})** (paper: the learned adapters look alike across tasks)"
        if not sim:
            lines.append(f"{topic}: not measured yet (needs final adapters of the protocol).")
            continue
        comp = sim["components"][key]
        chosen = lambda group: [p for p in comp["pairs"] if p["group"] == group and both_ok(p)]
        pick = lambda group: [p["cos"] for p in chosen(group)]
        other, same = _spread(pick("other task")), _spread(pick("same task, other seed"))
        noise, rand = _spread(pick("shuffled labels, other task")), comp["random vectors"]["all_layers"]
        ci = {g: _interval(chosen(g), g.startswith("same")) for g in
              ("other task", "same task, other seed", "shuffled labels, other task")}
        with_ci = lambda g, s: fmt(s, 1, 2) + (f", 95% interval over seeds {ci[g][0]:.2f} to {ci[g][1]:.2f}" if ci[g] else "")
        if not other["n"]:
            lines.append(f"{topic}: not measured yet (needs adapters of two tasks that learned).")
            continue
        # With seeds to resample, the mean cosine between tasks counts as above a control when its 95% interval
        # lies above the control's (or, for the shuffled-label control while a task has one seed, above its mean
        # + 2 sd of its pairs; for random vectors, above their mean + 2 standard errors) and 0.01 above the
        # control's mean; with one seed per task, when the mean clears the control's by 2 sd (``_gap``).
        low = ci["other task"][0] if ci["other task"] else None
        rule = ("the 95% interval of the mean cosine between tasks" if low is not None else
                "the mean cosine between tasks, by 2 sd of the pairs' cosines,")

        def beyond(control, group=None):
            if low is None:
                return other["mean"] - control["mean"] > _gap(other, control)
            if group and ci.get(group):
                top = ci[group][1]
            elif control["n"] < 2:
                top = math.inf
            else:  # pairs of adapters share adapters, so a standard error over pairs is too narrow: 2 sd;
                # random vectors are independent draws: 2 standard errors
                top = control["mean"] + 2 * control["sd"] / (1 if group else math.sqrt(control["n"]))
            return low > top and low - control["mean"] > MARGIN

        if not beyond(rand):
            verdict = f"no shared pattern shown: {rule} does not lie 0.01 above random vectors' mean"
        elif not noise.get("n"):
            verdict = f"more alike than random vectors ({rule} clears them); the shuffled-label control is not measured yet"
        elif not beyond(noise, "shuffled labels, other task"):
            # Say how it fell short: below the control's mean, or above it but not by the rule's margin.
            how = ("no more alike than shuffled-label adapters of different tasks (less, by the means: "
                   f"{other['mean']:.2f} against {noise['mean']:.2f})" if other["mean"] <= noise["mean"] else
                   "not clearly more alike than shuffled-label adapters of different tasks")
            verdict = (f"alike beyond chance ({rule} clears random vectors), but {how}: what they share may come "
                       "from training itself, not from the tasks")
        else:
            verdict = (f"alike beyond both controls ({rule} clears random vectors and shuffled-label adapters of "
                       "different tasks): a pattern the tasks share")
        # Seeds per task of the shuffled-label control: the verdict leans on it as much as on the same-task pairs.
        shuffled = collections.Counter(_task(name) for name in {x for p in chosen("shuffled labels, other task")
                                                                 for x in (p["a"], p["b"])})
        thin = [f"{same.get('n', 0)} same-task pairs of seeds"] if same.get("n", 0) < 3 else []
        if noise.get("n") and min(shuffled.values(), default=0) < 3:
            if len(set(shuffled.values())) == 1:
                fewest = min(shuffled.values())
                thin.append(f"{fewest} shuffled-label seed{'s' if fewest != 1 else ''} per task")
            else:  # uneven: say which task has how many, not just the fewest
                thin.append("shuffled-label seeds per task: " + ", ".join(f"{t} {k}" for t, k in sorted(shuffled.items())))
        few = f"preliminary ({' and '.join(thin)} so far): " if thin else ""
        text = (f"{topic}: {few}{verdict}. "
                f"Cosine of all layers joined, mean ± sd over pairs of adapters of {', '.join(ok)}: between tasks "
                f"{with_ci('other task', other)}; between seeds of one task {with_ci('same task, other seed', same)}; "
                f"between shuffled-label adapters of different tasks {with_ci('shuffled labels, other task', noise)}; "
                f"random vectors {fmt(rand, 1, 3)}.")
        if same.get("n") and same["mean"] > 0.1 and other["mean"] > 0:
            text += f" Two tasks are {other['mean'] / same['mean']:.0%} as alike as two seeds of one task."
        lines.append(text)

    topic = "**Which parts matter** (paper: bias terms and the normalization module matter most)"
    rows = {t: r for t in ok if all((r := result.get("parts", {}).get(t, {})).get(k, {}).get("n")
                                    for k in ("W", "b", "LN", "all (protocol hadamard2)", "head only (protocol)"))}
    if not rows:
        have = [f"{t} {k}" for t, r in result.get("parts", {}).items() for k in ("W", "b", "LN", "Wb", "head only (protocol)")
                if r.get(k, {}).get("n")]
        lines.append(f"{topic}: not measured yet (needs W, b, LayerNorm and head-only runs of a task that learned; "
                     f"run so far: {', '.join(have) or 'none'}).")
    else:
        beats = lambda r, x, y: r[x]["mean"] - r[y]["mean"] > _gap(r[x], r[y])
        useful = {t: [x for x in ("W", "b", "LN") if beats(r, x, "head only (protocol)")] for t, r in rows.items()}
        groups = [g for r in rows.values() for g in (r["W"], r["b"], r["LN"])]  # the runs this study trained
        if all(set(u) >= {"b", "LN"} and beats(r, "b", "W") and beats(r, "LN", "W") for u, r in zip(useful.values(), rows.values())):
            verdict = "confirmed: b alone and the LayerNorm alone each beat head only and beat W alone"
        elif all("W" in u and beats(r, "W", "b") and beats(r, "W", "LN") for u, r in zip(useful.values(), rows.values())):
            verdict = "refuted: W alone beats head only, b alone and the LayerNorm alone"
        else:
            failing = {t: [name for name, (x, y) in {"b above head only": ("b", "head only (protocol)"),
                                                      "LayerNorm above head only": ("LN", "head only (protocol)"),
                                                      "b above W": ("b", "W"), "LayerNorm above W": ("LN", "W")}.items()
                           if not beats(r, x, y)] for t, r in rows.items()}
            every = groups + [r["head only (protocol)"] for r in rows.values()]  # head only's spread is noise too
            held = [t for t, f in failing.items() if not f]
            verdict = (f"not confirmed on every task: beyond {_noise(*every)}, the parts separate this way on "
                       + (", ".join(held) if held else "no task") + "; not shown on "
                       + "; ".join(f"{t}: {', '.join(f)}" for t, f in failing.items() if f))
        # The paper names two parts: say for each alone where it passes both tests, so "not confirmed" is not read
        # as refuting both.
        def passes(x):
            return [t for t, r in rows.items() if beats(r, x, "head only (protocol)") and beats(r, x, "W")]
        claim = lambda name, x: (f"{name} alone passes both tests (above head only and above W alone) on "
                                 f"{len(passes(x))} of {len(rows)} tasks"
                                 + (f" ({', '.join(passes(x))})" if passes(x) else ""))
        verdict += ". Claim by claim: " + claim("the LayerNorm", "LN") + "; " + claim("b", "b")
        # Shown, not a verdict: which single part comes closest to all three, and whether all three is clearly ahead.
        best = {t: max(("W", "b", "LN"), key=lambda x: r[x]["mean"]) for t, r in rows.items()}
        behind = [t for t, r in rows.items() if beats(r, "all (protocol hadamard2)", best[t])]
        verdict += (". Best single part by mean: " + ", ".join(f"{t} {'LayerNorm' if x == 'LN' else x}" for t, x in best.items()) +
                    ("; all three beats it beyond the noise on " + ", ".join(behind) if behind else
                     "; all three is not ahead of it beyond the noise on any task"))
        lines.append(f"{topic}, on {', '.join(rows)}: {_few(*groups)}{verdict}. Dev x100, stage 2 training one part "
                     "at the rate the protocol chose for all three: " + "; ".join(
                         f"{t}: W {fmt(r['W'])}, b {fmt(r['b'])}, LayerNorm {fmt(r['LN'])}, W + b "
                         f"{fmt(r.get('Wb'))}, all three {fmt(r['all (protocol hadamard2)'])}, "
                         f"head only {fmt(r['head only (protocol)'])}" for t, r in rows.items()) + ".")

    topic = "**Redundant layers** (paper: some layers' adapters can be removed)"
    pr = result.get("pruning", {})
    rows = {t: pr[t] for t in ok if pr.get(t, {}).get("post-hoc all", {}).get("n")
            and pr[t].get("retrained top4", {}).get("n")}
    if not rows:
        lines.append(f"{topic}: not measured yet (needs retrained pruned adapters of a task that learned).")
    else:
        loss, dear, groups = _pruning_cost(rows, 4)
        if dear:
            verdict = f"retraining on the top 4 of 6 layers costs more than {_noise(*groups)} on " + ", ".join(dear)
        else:
            verdict = ("no loss detected: adapters retrained on the 4 layers ranked highest on held-out training data "
                       f"score within {_noise(*groups)} of all 6 layers")
        text = f"{topic}, on {', '.join(rows)}: {_few(*groups)}{verdict} (loss {_points(loss)} points). "
        # Pruning further, to 2 of 6 layers: its cost with the same test (the issue asks for both).
        loss2, dear2, groups2 = _pruning_cost(rows, 2)
        if loss2:
            text += ("Keeping 2 of 6 layers (retrained) " + (f"costs more than {_noise(*groups2)} on {', '.join(dear2)}"
                                                              if dear2 else f"loses nothing beyond {_noise(*groups2)} on any task")
                     + f" (loss {_points(loss2)} points). ")
        for k in (4, 2):
            unlearned = [t for t, r in rows.items() if r.get(f"retrained top{k}", {}).get("n")
                         and r[f"retrained top{k}"]["min"] - learn[t]["majority"] <= 2 * MARGIN]
            if unlearned:  # the lowest seed against the majority class: how close to "learned nothing" it came
                text += ("On " + ", ".join(f"{t} (lowest seed {100 * rows[t][f'retrained top{k}']['min']:.1f}, majority "
                                           f"class {100 * learn[t]['majority']:.1f})" for t in unlearned)
                         + f" a retrained top-{k} adapter did not beat the majority class by 2 points: it may have "
                         "learned little, so part of the loss may be the run, not the pruning. ")
        # The ranking's control: keeping the k layers ranked lowest instead of the k ranked highest (post-hoc).
        pairs, good = _ranking_control(rows, 4)
        pairs2, good2 = _ranking_control(rows, 2)
        if pairs:
            text += ("The held-out ranking beats its control (keeping the bottom 4 layers instead of the top 4, "
                     f"post-hoc) on {len(good)} of {len(pairs)} tasks" + (f" ({', '.join(good)})" if good else ""))
            if pairs2:
                text += (f"; keeping the top 2 rather than the bottom 2, on {len(good2)} of {len(pairs2)}"
                         + (f" ({', '.join(good2)})" if good2 else ""))
            text += ". "
        text += "Dev x100: " + "; ".join(
            f"{t}: 6 layers {fmt(r['post-hoc all'])}, top 4 retrained {fmt(r['retrained top4'])}, top 2 retrained "
            f"{fmt(r.get('retrained top2'))}; post-hoc top 4 {fmt(r['post-hoc top4'])}, bottom 4 {fmt(r['post-hoc bottom4'])}"
            + (f", top 2 {fmt(r['post-hoc top2'])}, bottom 2 {fmt(r['post-hoc bottom2'])}" if t in pairs2 else "")
            for t, r in rows.items()) + "."
        orders = {t: pr[t]["ranking"] for t in ok if t in pr}
        if len(orders) > 1:
            a = _agreement(orders)
            text += (f" The same layers across tasks? Spearman of the rankings {fmt(a['spearman'], 1, 2)}; the top-4 sets "
                     f"share {a['top4_overlap']['mean']:.2f} layers, against {a['top4_overlap_by_chance']:.2f} for two "
                     "random 4-of-6 sets (which always share at least 2)" +
                     (": no more than chance." if a["top4_overlap"]["mean"] - a["top4_overlap_by_chance"] < CHANCE_OVERLAP
                      else "."))
        lines.append(text)

    topic = "**Shared adapters** (paper: patterns shared across tasks point to adapters shared between tasks)"
    sh = result.get("shared", {})
    none = sh.get("none", {}).get("scores", {})
    # a task counts here only if its own adapters (no layer shared) learned in this one-stage multi-task recipe
    fit = [t for t in ok if none.get(t, {}).get("n") and none[t]["mean"] - learn[t]["majority"] > _gap(none[t], {})]
    if not fit:
        lines.append(f"{topic}: not measured yet (needs multi-task runs in which a task that learned beats its majority class).")
    else:
        parts = []
        for v in ("half", "all"):
            scores = sh.get(v, {}).get("scores", {})
            if not all(scores.get(t, {}).get("n") for t in fit):
                continue
            diffs = {t: scores[t]["mean"] - none[t]["mean"] for t in fit}
            worse = [t for t in fit if -diffs[t] > _gap(scores[t], none[t])]
            # a loss past the 1-point floor that the seeds' spread swallows: named, so it is not read as "no loss"
            unsure = [f"{t} (sd up to {100 * max(scores[t]['sd'], none[t]['sd']):.1f})" for t in fit
                      if t not in worse and -diffs[t] > MARGIN]
            noise = _noise(*[scores[t] for t in fit], *[none[t] for t in fit])
            parts.append(f"{_few(*[scores[t] for t in fit], *[none[t] for t in fit])}sharing {SHARED_WHAT[v]} "
                         f"({sh[v]['adapter_params_all_tasks']:,} adapter parameters for five tasks, against "
                         f"{sh['none']['adapter_params_all_tasks']:,}) changes the dev score by "
                         + ", ".join(f"{t} {100 * d:+.1f}" for t, d in diffs.items()) + " points: "
                         + (f"worse beyond {noise} on {', '.join(worse)}" if worse else f"no loss beyond {noise}")
                         + (f"; a loss of more than 1 point that the seeds' spread does not separate from noise on {', '.join(unsure)}"
                            if unsure else ""))
        lines.append(f"{topic}, on {', '.join(fit)}: " + ("; ".join(parts) if parts else "not measured yet") + ".")

    rq_all = result.get("rq", {})
    # Only models that beat the majority class count; a task counts with the seeds of it that did.
    rq_rows = {t: [m for m in r["models"] if m["learned"]] for t, r in rq_all.items()}
    rq_rows = {t: ms for t, ms in rq_rows.items() if ms}
    skipped = [f"{t} seed {m['seed']} (dev x100 {100 * m['dev_score']:.1f}, majority class {100 * r['majority']:.1f})"
               for t, r in rq_all.items() for m in r["models"] if not m["learned"]]
    if skipped:
        lines.append("**Fully fine-tuned models left out of RQ1 and RQ2**, as they did not beat the majority class by "
                     "2 points: " + ", ".join(skipped) + ".")
    if not rq_rows:
        missing = "no fully fine-tuned model that learned yet" if rq_all else "not measured yet"
        lines += [f"**RQ1** (paper: the attention outputs' norm grows markedly under full fine-tuning): {missing}.",
                  f"**RQ2** (paper: an element-wise linear map suffices): {missing}."]
    else:
        thin = [t for t, ms in rq_rows.items() if len(ms) < 3]
        few = f"preliminary (fewer than 3 seeds that learned for {', '.join(thin)}): " if thin else ""
        several = any(len(ms) > 1 for ms in rq_rows.values())
        seeds = ", ".join(f"{t} {len(ms)}" for t, ms in rq_rows.items())
        n_models = sum(map(len, rq_rows.values()))
        reused = [f"{t} seed {m['seed']}" for t, ms in rq_rows.items() for m in ms if m.get("reused")]
        if reused:  # models git ignores and this machine no longer has: the last analysis's numbers
            scope = f"all {n_models} models" if len(reused) == n_models else ", ".join(reused)
            seeds += (f"; {scope}: numbers of an earlier analysis with the same settings, kept because the models "
                      "(git-ignored, too large to commit) are not on the machine that ran this one")
        # growth[t][layer] = that layer's norm growth on every seed of task t
        growth = {t: list(zip(*[[f["norm_after"] / f["norm_before"] - 1 for f in m["layers"]] for m in ms]))
                  for t, ms in rq_rows.items()}
        rel = {t: list(zip(*[[f["relative_change"] for f in m["layers"]] for m in ms])) for t, ms in rq_rows.items()}
        not_grown = [f"{t} layer {i}" for t, gs in growth.items() for i, g in enumerate(gs) if min(g) <= MARGIN]
        n_pairs = sum(len(gs) for gs in growth.values())
        every = [x for gs in growth.values() for g in gs for x in g]
        pm = lambda values, f: f(statistics.mean(values)) + (f" ± {f(statistics.stdev(values)).lstrip('+')}"
                                                              if len(values) > 1 else "")
        on_every = " on every seed" if several else ""
        lines.append(f"**RQ1** (paper: the attention outputs' norm grows markedly under full fine-tuning), {few}the "
                     f"protocol's fully fine-tuned models (seeds that learned, per task: {seeds}): " +
                     (f"confirmed: the norm grows by more than 1%{on_every} in every layer of every task "
                      f"({min(every):+.0%} to {max(every):+.0%})" if not not_grown else
                      f"not in every layer: the norm grows by more than 1%{on_every} in {n_pairs - len(not_grown)} of "
                      f"{n_pairs} (task, layer) pairs, not in {', '.join(not_grown)} (growth from {min(every):+.0%} to "
                      f"{max(every):+.0%})") +
                     ". Rule: the norm must grow by more than 1%" + (" on every seed" if several else "") +
                     " (a floor, not the paper's \"markedly\"). Norm change per layer, then relative change "
                     "(mean ‖after − before‖ / mean ‖before‖)" + (", mean ± sd over seeds" if several else "") + ": " +
                     "; ".join(f"{t} (dev x100 {pm([100 * m['dev_score'] for m in ms], lambda v: f'{v:.1f}')}): "
                               + " ".join(pm([100 * x for x in g], lambda v: f"{v:+.0f}%") for g in growth[t]) + " | "
                               + " ".join(pm(list(x), lambda v: f"{v:.2f}") for x in rel[t])
                               for t, ms in rq_rows.items()) + ".")
        layers = [f for ms in rq_rows.values() for m in ms for f in m["layers"]]  # every seed's every layer
        fitted = sorted({(m["layers"][0]["fit_tokens"], m["layers"][0]["test_tokens"]) for ms in rq_rows.values() for m in ms})
        tokens = (f"{fitted[0][0]:,} dev tokens and scored on {fitted[0][1]:,} others" if len(fitted) == 1 else
                  f"{min(a for a, _ in fitted):,} to {max(a for a, _ in fitted):,} dev tokens (by task) and scored on as "
                  "many others")
        span = lambda values: f"{min(values):+.3f} to {max(values):+.3f}"
        out_gain = [f["elementwise"] - f["identity"] for f in layers]
        out_richer = [max(f["quadratic"], f["linear"]) - f["elementwise"] for f in layers]
        ch = [f["change"]["elementwise"] for f in layers]
        ch_richer = [max(f["change"]["quadratic"], f["change"]["linear"]) - f["change"]["elementwise"] for f in layers]
        outputs_ok = min(out_gain) > MARGIN and max(out_richer) < 0.05
        change_ok = min(ch) > 0.05 and max(ch_richer) < 0.05
        def verdict(ok, failure):
            return "it suffices" if ok else f"it does not suffice ({failure})"
        out_fail = ("the better of the quadratic and full linear maps adds up to "
                    f"{max(out_richer):+.3f}" if max(out_richer) >= 0.05 else f"it gains as little as {min(out_gain):+.3f} over the identity")
        ch_fail = (f"it explains as little as {min(ch):+.3f}" if min(ch) <= 0.05 else
                   f"a richer map adds up to {max(ch_richer):+.3f}")
        lines.append(
            f"**RQ2** (paper: an element-wise linear map suffices), {few}maps fitted on {tokens} (the full linear map "
            f"has {layers[0]['linear_params']:,} numbers a layer), every layer of {n_models} "
            f"models (seeds that learned, per task: {seeds}): on the fine-tuned outputs, {verdict(outputs_ok, out_fail)}; "
            f"on the change (after − before, where the identity scores at most 0), {verdict(change_ok, ch_fail)}. "
            f"Held-out R² per layer: on the outputs element-wise beats the identity by {span(out_gain)} and the better "
            f"richer map adds {span(out_richer)}; on the change element-wise scores {span(ch)} and the better richer map "
            f"adds {span(ch_richer)}. Rule: element-wise must beat the identity by 0.01 (outputs), respectively explain more "
            f"than 0.05 (change), in every layer{on_every}, and no richer map may add 0.05.")
    return lines


# ---------------------------------------------------------------- tables

def fmt(s: dict, scale=100, digits=1) -> str:
    if not s or not s.get("n"):
        return "-"
    spread = f" ± {scale * s['sd']:.{digits}f}" if s["n"] > 1 else ""  # one seed has no spread: print none, not "± 0.0"
    return f"{scale * s['mean']:.{digits}f}{spread} (n={s['n']})"


def tables(result: dict) -> str:
    md = ["# Tuning patterns, with controls (issue 9)\n",
          f"Command: `{result['command']}`  ",
          *([f"Conclusions and tables rendered again from its results by `{result['rendered_by']}`  "]
            if result.get("rendered_by") else []), f"Machine: {result['machine']}, {result['threads']} threads, torch "
          f"{result['torch']}; protocol runs and adapters from `{result['protocol']}`; training precision of the runs: "
          f"{', '.join(result.get('precision', [])) or '-'} (each run's file names its own, threads and machine).\n",
          "## Conclusions\n", "Each finding of the paper, with the numbers and the control behind it (rules: "
          "`conclusions()` in `benchmarks/patterns.py`):\n", *[f"- {line}" for line in result.get("conclusions", [])], ""]
    sim = result["similarity"]
    if sim:
        md += ["## 1. Are the adapters alike across tasks?\n",
               f"Cosine similarity, all {len(sim['layers'])} layers' vectors joined, mean ± sd over pairs (n pairs). "
               f"Adapters: {', '.join(sim['adapters'])}; shuffled-label adapters: "
               f"{', '.join(sim['shuffled_adapters']) or 'none yet'}. This table counts every task, those that did "
               "not learn too; the conclusions above keep to the tasks that learned. Two random vectors of one "
               f"layer's size ({sim['hidden']}) have |cosine| below {sim['random_95']:.3f} 95% of the time; the random "
               f"vectors column is for all layers joined ({sim['hidden'] * len(sim['layers']):,} numbers).\n",
               "| part | same task, other seed | other task | task vs its shuffled-label adapter | shuffled labels, other task | random vectors |",
               "|---|---|---|---|---|---|"]
        for key, label in COMPONENTS.items():
            g = sim["components"][key]
            md.append(f"| {label} | " + " | ".join(fmt(g[k]["all_layers"], 1, 2) for k in
                                                    ["same task, other seed", "other task", "task vs its shuffled-label adapter",
                                                     "shuffled labels, other task", "random vectors"]) + " |")
        md += ["", "Per layer, mean cosine over pairs: other task / same task, other seed / shuffled labels, other task "
                   "(the control). Two random vectors of one layer's size: |cosine| below "
                   f"{sim['random_95']:.3f} 95% of the time.", "",
               "| part | " + " | ".join(f"layer {l}" for l in sim["layers"]) + " |", "|---|" + "---|" * len(sim["layers"])]
        for key, label in COMPONENTS.items():
            g = sim["components"][key]
            cells = []
            for i in range(len(sim["layers"])):
                cells.append(" / ".join(f"{g[k]['per_layer'][i]['mean']:.2f}" if g[k]["per_layer"][i].get("n") else "-" for k in
                                        ("other task", "same task, other seed", "shuffled labels, other task")))
            md.append(f"| {label} | " + " | ".join(cells) + " |")
        md.append("")
    md += ["## 2. Which parts matter?\n",
           "Dev score x100, mean ± sd over seeds; stage 2 trains only the named part (plus the head), the rest of "
           "the recipe unchanged.\n",
           "| task | W only | b only | LayerNorm only | W + b | all three (protocol) | head only (protocol) | shuffled labels |",
           "|---|---|---|---|---|---|---|---|"]
    for task, row in result["parts"].items():
        md.append(f"| {task} | " + " | ".join(fmt(row[k]) for k in ["W", "b", "LN", "Wb", "all (protocol hadamard2)",
                                                                       "head only (protocol)", "shuffled labels"]) + " |")
    md += ["", "## 3. Redundant layers\n",
           "Layers ranked on the held-out 10% of the training set (the protocol's grid adapter at the chosen rate); "
           "dev score x100 of the protocol's final adapters with only some layers kept (post-hoc), and of adapters "
           "retrained on the top layers only. A ranking lists the most important layer first; \"all tied\": removing any "
           "one layer left the held-out score unchanged, so the order is only the layers' own.\n",
           "| task | ranking | all layers | top 4 | bottom 4 (control) | top 2 | bottom 2 (control) | retrained top 4 | retrained top 2 |",
           "|---|---|---|---|---|---|---|---|---|"]
    pr = result["pruning"]
    for task, row in pr.items():
        if task.startswith("_"):
            continue
        # A task whose held-out score no single layer's removal moves has no ranking: its order is just the layers'.
        tied = len(set(row.get("drops_held_out", {}).values())) == 1
        md.append(f"| {task} | {row['ranking']}{' (all tied)' if tied else ''} | " + " | ".join(fmt(row.get(k, {})) for k in
                  ["post-hoc all", "post-hoc top4", "post-hoc bottom4", "post-hoc top2", "post-hoc bottom2",
                   "retrained top4", "retrained top2"]) + " |")
    if "_agreement" in pr:
        a = pr["_agreement"]
        md += ["", f"Agreement between the rankings of every task in this table (those that did not learn too; the "
                   f"conclusions above keep to the tasks that learned): Spearman {fmt(a['spearman'], 1, 2)}; "
                   f"top-4 sets share {fmt(a['top4_overlap'], 1, 2)} layers, against "
                   f"{a['top4_overlap_by_chance']:.2f} for two random 4-of-6 sets."]
    md += ["", "## 4. Shared adapters\n",
           f"One-stage multi-task training of all five tasks (lr {SHARED_LR:g}, {protocol.EPOCHS} epochs, SST-2 cut to "
           f"{SHARED_SST2_LIMIT:,} examples), each task with its own head; dev score x100, mean ± sd over seeds.\n",
           "| shared layers | adapter + LayerNorm parameters (all tasks) | " + " | ".join(TASKS) + " |",
           "|---|---|" + "---|" * len(TASKS)]
    for v, row in result["shared"].items():
        params, layers = row["adapter_params_all_tasks"], row["shared_layers"]
        md.append(f"| {v}{f' {layers}' if layers is not None else ''} | {f'{params:,}' if params else '-'} | ")
        md[-1] += " | ".join(fmt(row["scores"][t]) for t in TASKS) + " |"
    recorded = sum(row.get("recorded", 0) for row in result["shared"].values())
    one_answer = [f"{v} {x}" for v, row in result["shared"].items() for x in row.get("one_answer", [])]
    md += ["", f"Collapse to one answer (every dev example of a task given the same class), among the {recorded} shared "
               f"runs that record it (runs made before commit 3974db9 do not): {', '.join(one_answer) or 'none'}."]
    md += ["", "## 5. RQ1 and RQ2: attention outputs under full fine-tuning\n"]
    for task, r in result["rq"].items():
        # The same models as the verdicts: those that learned, or all of them if none did (then say so).
        learned = [m for m in r["models"] if m["learned"]]
        models = learned or r["models"]
        first = models[0]["layers"][0]
        pm = lambda values, digits: (f"{statistics.mean(values):.{digits}f}" +
                                     (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else ""))
        scores = ", ".join(f"seed {m['seed']} {100 * m['dev_score']:.1f}{'' if m['learned'] else ' (did not learn)'}"
                           f"{' (model not on this machine: numbers of the previous analysis)' if m.get('reused') else ''}"
                           for m in r["models"])
        which = (f"mean ± sd over the {len(models)} seeds that learned" if learned and len(models) > 1 else
                 f"seed {models[0]['seed']}" if learned else
                 f"no model learned: the {len(models)} model(s) shown for completeness, left out of the verdicts")
        md += [f"**{task}**, the protocol's fully fine-tuned models (dev {r['metric']}: {scores}; majority class "
               f"{100 * r['majority']:.1f}); {which}. Maps fitted on {first['fit_tokens']:,} dev tokens, scored on the "
               f"other {first['test_tokens']:,}; the full linear map has {first['linear_params']:,} numbers. The norm "
               "before is the pre-trained model's, the same for every seed.\n",
               "| layer | norm before | norm after | relative change | R² outputs: identity / element-wise / quadratic / linear "
               "| R² change: identity / element-wise / quadratic / linear |", "|---|---|---|---|---|---|"]
        for i in range(len(models[0]["layers"])):
            fs = [m["layers"][i] for m in models]
            col = lambda key, digits=3: pm([f[key] for f in fs], digits)
            ch = lambda key: pm([f["change"][key] for f in fs], 3)
            md.append(f"| {i} | {fs[0]['norm_before']:.2f} | {col('norm_after', 2)} | {col('relative_change', 2)} | "
                      f"{col('identity')} / {col('elementwise')} / {col('quadratic')} / {col('linear')} | "
                      f"{ch('identity')} / {ch('elementwise')} / {ch('quadratic')} / {ch('linear')} |")
        md.append("")
    return "\n".join(md) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", default="results/glue_protocol_cpu", help="the GLUE protocol's output folder")
    parser.add_argument("--out", default="results/patterns_cpu")
    parser.add_argument("--tasks", nargs="+", default=TASKS, choices=TASKS)
    parser.add_argument("--kinds", nargs="+", default=["parts", "shuffled", "pruned", "shared"],
                        choices=["parts", "shuffled", "pruned", "shared"])
    parser.add_argument("--seeds-all", type=int, default=1, help="seeds for CoLA and SST-2 (RTE, MRPC, STS-B get 3)")
    parser.add_argument("--sst2-limit", type=int, default=20000, help="as in the protocol")
    parser.add_argument("--limit", type=int, default=0, help="cap every training and dev set (smoke tests only)")
    parser.add_argument("--rq-tokens", type=int, default=20000, help="dev tokens captured per layer for RQ1/RQ2")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    parser.add_argument("--time-budget", type=float, default=math.inf)
    parser.add_argument("--wait", action="store_true", help="wait for the protocol and other workers")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--analyse", action="store_true", help="only the analyses and tables")
    parser.add_argument("--render", action="store_true",
                        help="only conclusions and tables, from the saved results.json (after a change to their wording)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.analyse or args.render:
        print(tables(analyse(args) if args.analyse else render(args)))
    else:
        run(args)


if __name__ == "__main__":
    main()
