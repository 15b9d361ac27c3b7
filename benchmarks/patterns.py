"""The tuning-pattern analyses on real GLUE, written to results/patterns.md (+ .json, + adapters).

    GLUE_DIR=../shared/glue_data python benchmarks/patterns.py --limit 500 --eval-limit 400 --epochs 3

1. One Hadamard adapter per task (adapters + post-attention LayerNorms + head, like the benchmark).
2. Cross-task similarity of the learned W - 1 and b, layer by layer.
3. Layer importance per task: reset one layer, measure the drop; the mean rank over tasks.
4. Redundancy pruning: keep the k most important layers (by the mean ranking), retrain, score vs parameters.
5. Shared adapters: one adapter set trained on all tasks at once (task heads separate), and a
   half-shared variant (the most alike layers shared, the rest per task), vs per-task adapters.
Full fine-tuning scores for reference are read from the benchmark's results.json when it exists.
"""
import argparse
import json
import platform
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hadamard_lite as hl  # noqa: E402
from hadamard_lite import analysis  # noqa: E402
from hadamard_lite.data import load_glue  # noqa: E402
from hadamard_lite.trainer import TrainConfig, Trainer  # noqa: E402


def fresh_adapted(num_labels: int, layers=None):
    model = hl.load_model(num_labels=num_labels)
    hl.add_hadamard_adapter(model, layers)
    hl.freeze_for_stage(model, "adapter", train_head=True)
    return model


def layer_order(importance: dict, layers: list) -> list:
    """Layers from most to least important by their mean rank over tasks. Tied drops share their
    average rank, so a task where no reset changes the score (all drops 0) favours no layer."""
    from scipy.stats import rankdata

    ranks = [rankdata([-{r["layer"]: r["drop"] for r in rows}[l] for l in layers]) for rows in importance.values()]
    mean_rank = np.mean(ranks, axis=0)
    return [layers[i] for i in np.argsort(mean_rank, kind="stable")]


def prune_and_retrain(args, tokenizer, train, dev, config, order, hidden, base_params) -> dict:
    """Retrain per-task adapters on only the k most important layers, for each k in --keep."""
    pruned = {}
    for k in args.keep:
        keep = sorted(order[:k])
        scores = {}
        for task in args.tasks:
            torch.manual_seed(0)
            model = fresh_adapted(train[task].task.num_labels, keep)
            scores[task] = Trainer(model, tokenizer, train[task], dev[task], config).fit()["best_metric"]
        params = len(keep) * 4 * hidden
        pruned[k] = {"layers": keep, "scores": scores, "params": params, "pct": 100 * params / base_params}
        print("pruned", k, keep, {t: round(s, 4) for t, s in scores.items()}, flush=True)
    return pruned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc", "stsb", "rte", "cola"])
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--eval-limit", type=int, default=400)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--keep", type=int, nargs="+", default=[4, 2], help="layer counts for pruning")
    parser.add_argument("--benchmark", default="results/benchmark_cpu/results.json")
    parser.add_argument("--out", default="results/patterns")
    parser.add_argument("--redo-pruning", action="store_true",
                        help="reuse --out/patterns.json and only recompute the layer order and the pruning runs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = hl.load_tokenizer()
    pretrained = hl.load_model(num_labels=2)
    config = TrainConfig(epochs=args.epochs, lr=args.lr, progress=False)
    train = {t: load_glue(t, "train", limit=args.limit, seed=0) for t in args.tasks}
    dev = {t: load_glue(t, "dev", limit=args.eval_limit, seed=0) for t in args.tasks}
    score = lambda model, task: next(iter(Trainer(model, tokenizer, dev[task], dev[task], config).evaluate().values()))
    if args.redo_pruning:
        report = json.loads((out / "patterns.json").read_text())
        report["layer_order"] = layer_order(report["importance"], report["similarity"]["layers"])
        base_params = hl.count_parameters(pretrained.base_model)[1]
        report["pruned"] = prune_and_retrain(args, tokenizer, train, dev, config, report["layer_order"],
                                             pretrained.config.hidden_size, base_params)
        report["command"] += "; then python " + " ".join(sys.argv)
        return finish(report, out, args, pretrained.config.hidden_size)
    report = {"command": "python " + " ".join(sys.argv), "machine": f"{platform.machine()} CPU, {torch.get_num_threads()} threads",
              "source": train[args.tasks[0]].source, "tasks": args.tasks}

    # 1. per-task adapters
    models, per_task = {}, {}
    for task in args.tasks:
        torch.manual_seed(0)
        models[task] = fresh_adapted(train[task].task.num_labels)
        per_task[task] = Trainer(models[task], tokenizer, train[task], dev[task], config).fit()["best_metric"]
        hl.save_adapter(models[task], out / "adapters" / task)
        print("adapter", task, round(per_task[task], 4), flush=True)
    report["per_task"] = per_task
    report["statistics"] = {t: analysis.adapter_statistics(m) for t, m in models.items()}

    # 2. similarity
    sim = analysis.cross_task_similarity(models)
    report["similarity"] = {"layers": sim["layers"], "w": sim["w"].tolist(), "b": sim["b"].tolist()}
    off_diagonal = ~np.eye(len(args.tasks), dtype=bool)
    layer_alike = [float(sim["w"][l][off_diagonal].mean() + sim["b"][l][off_diagonal].mean()) / 2 for l in range(len(sim["layers"]))]
    report["layer_alike"] = layer_alike

    # 3. layer importance (each task's model scored on its own dev set)
    ranks = {}
    for task in args.tasks:
        ranking = analysis.layer_importance(models[task], pretrained, lambda m, t=task: score(m, t))
        ranks[task] = ranking
        print("importance", task, [(r["layer"], round(r["drop"], 4)) for r in ranking], flush=True)
    report["importance"] = ranks
    order = layer_order(ranks, sim["layers"])
    report["layer_order"] = order

    # 4. pruning: retrain with only the k most important layers
    base_params = hl.count_parameters(pretrained.base_model)[1]
    report["pruned"] = prune_and_retrain(args, tokenizer, train, dev, config, order, pretrained.config.hidden_size, base_params)

    # 5. shared adapters: all layers shared, and the most alike half shared
    alike = sorted(range(len(sim["layers"])), key=lambda l: -layer_alike[l])
    report["shared"] = {}
    for label, shared_layers in (("all layers shared", list(sim["layers"])),
                                 ("most alike half shared", sorted(sim["layers"][l] for l in alike[:len(alike) // 2]))):
        torch.manual_seed(0)
        task_models = {t: fresh_adapted(train[t].task.num_labels) for t in args.tasks}
        analysis.share_adapters(task_models, shared_layers)
        result = analysis.train_multitask(task_models, tokenizer, train, dev, epochs=args.epochs, lr=args.lr, progress=False)
        heads = sum(sum(p.numel() for p in hl.head_parameters(m).values()) for m in task_models.values())
        report["shared"][label] = {"layers": shared_layers, "scores": result["scores"],
                                   "adapter_params_all_tasks": result["trainable"] - heads}
        print("shared", label, {t: round(s, 4) for t, s in result["scores"].items()}, flush=True)

    return finish(report, out, args, pretrained.config.hidden_size)


def finish(report: dict, out: Path, args, hidden: int) -> None:
    full = {}
    if Path(args.benchmark).is_file():
        bench = json.loads(Path(args.benchmark).read_text())
        full = {t: s for t, s in bench["summary"].get("full", {}).get("scores", {}).items()}
    report["full_finetuning"] = full
    (out / "patterns.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    write_markdown(report, out.parent / "patterns.md", args, hidden)
    print((out.parent / "patterns.md").read_text())
    # Notebook 05 reads a copy inside the package, so it works where results/ is absent (Colab, pip installs).
    shipped = Path(hl.__file__).parent / "data_files"
    if out.resolve() == Path("results/patterns").resolve():
        for source in (out / "patterns.json", out.parent / "patterns.md"):
            shutil.copyfile(source, shipped / source.name)


def write_markdown(r: dict, path: Path, args, hidden: int) -> None:
    tasks = r["tasks"]
    pct = lambda x: f"{100 * x:.1f}"
    mean = lambda scores: f"{100 * np.mean([scores[t] for t in tasks]):.1f}"
    per_task_params = len(r["similarity"]["layers"]) * 4 * hidden
    lines = [f"# Tuning patterns ({r['machine']})", "", f"Command: `{r['command']}`  ",
             f"Data: {r['source']} and the other tasks' files, seeded subsets ({args.limit} train, {args.eval_limit} dev "
             f"per task; CPU, so subsets); model {hl.DEFAULT_MODEL}; {args.epochs} epochs at lr {args.lr}, seed 0.", "",
             "## Cross-task similarity of the learned adapters", "",
             "Cosine of W − 1 (and of b) between tasks, averaged over layers:", "",
             "| | " + " | ".join(tasks) + " |", "|---|" + "---|" * len(tasks)]
    w = np.array(r["similarity"]["w"]).mean(0)
    b = np.array(r["similarity"]["b"]).mean(0)
    for i, t in enumerate(tasks):
        lines.append(f"| {t} | " + " | ".join(f"{w[i, j]:.2f} / {b[i, j]:.2f}" for j in range(len(tasks))) + " |")
    lines += ["", "Mean off-diagonal similarity per layer ((W + b) / 2): " +
              ", ".join(f"layer {l}: {v:.2f}" for l, v in zip(r["similarity"]["layers"], r["layer_alike"])), "",
              "## Layer importance", "", "Drop in the dev metric (points) when one layer's adapter and LayerNorm are reset:", "",
              "| task | " + " | ".join(f"layer {l}" for l in r["similarity"]["layers"]) + " |",
              "|---|" + "---|" * len(r["similarity"]["layers"])]
    for t in tasks:
        drops = {x["layer"]: x["drop"] for x in r["importance"][t]}
        lines.append(f"| {t} | " + " | ".join(f"{100 * drops[l]:.1f}" for l in r["similarity"]["layers"]) + " |")
    lines += ["", f"Layers from most to least important (mean rank over tasks): {r['layer_order']}", "",
              "## Scores against trainable parameters", "",
              "| variant | adapter + LayerNorm parameters | " + " | ".join(tasks) + " | mean |", "|---|---|" + "---|" * (len(tasks) + 1)]
    if r["full_finetuning"] and all(t in r["full_finetuning"] for t in tasks):
        lines.append("| full fine-tuning (from the benchmark run) | all | " +
                     " | ".join(pct(r["full_finetuning"][t]) for t in tasks) + f" | {mean(r['full_finetuning'])} |")
    lines.append(f"| per-task adapters, all layers | {per_task_params:,} per task | " +
                 " | ".join(pct(r["per_task"][t]) for t in tasks) + f" | {mean(r['per_task'])} |")
    for k, p in r["pruned"].items():
        lines.append(f"| per-task, {k} most important layers {p['layers']} | {p['params']:,} per task ({p['pct']:.4f}%) | " +
                     " | ".join(pct(p["scores"][t]) for t in tasks) + f" | {mean(p['scores'])} |")
    for label, s in r["shared"].items():
        lines.append(f"| {label} {s['layers']} | {s['adapter_params_all_tasks']:,} for all {len(tasks)} tasks | " +
                     " | ".join(pct(s["scores"][t]) for t in tasks) + f" | {mean(s['scores'])} |")
    lines += ["", f"Per-task adapters for all {len(tasks)} tasks: {len(tasks) * per_task_params:,} parameters. "
              "Metrics: CoLA Matthews, MRPC F1, STS-B Pearson, accuracy otherwise (x100)."]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
