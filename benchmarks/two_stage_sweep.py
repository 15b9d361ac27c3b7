"""How the open choices of the two-stage recipe change the score: stage learning rates and
whether the head trains in stage 2. The defaults of `train_two_stage` come from this table.

    GLUE_DIR=../shared/glue_data python benchmarks/two_stage_sweep.py --tasks sst2 mrpc --limit 1000

Every row: 1 epoch of head only (stage 1), then 3 epochs of adapters + post-attention LayerNorms
(stage 2), on the same seeded subset; the dev metric is the best epoch of stage 2.
"""
import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hadamard_lite as hl  # noqa: E402
from hadamard_lite.data import load_glue  # noqa: E402
from hadamard_lite.trainer import TrainConfig, train_two_stage  # noqa: E402

GRID = [  # (head_lr, adapter_lr, train_head in stage 2)
    (1e-2, 1e-3, True), (1e-2, 3e-3, True), (1e-2, 1e-2, True), (1e-2, 3e-2, True),
    (1e-2, 1e-2, False), (1e-3, 1e-2, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["sst2", "mrpc"])
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--eval-limit", type=int, default=400)
    parser.add_argument("--out", default="results/two_stage_sweep")
    args = parser.parse_args()
    tokenizer = hl.load_tokenizer()
    rows = []
    for task in args.tasks:
        train = load_glue(task, "train", limit=args.limit, seed=0)
        dev = load_glue(task, "dev", limit=args.eval_limit, seed=0)
        for head_lr, adapter_lr, train_head in GRID:
            model = hl.load_model(num_labels=train.task.num_labels)
            result = train_two_stage(model, tokenizer, train, dev, head_epochs=1, adapter_epochs=3, head_lr=head_lr,
                                     adapter_lr=adapter_lr, train_head=train_head, config=TrainConfig(progress=False))
            rows.append({"task": task, "head_lr": head_lr, "adapter_lr": adapter_lr, "train_head": train_head,
                         "after_stage_1": result["head"]["best_metric"], "score": result["best_metric"],
                         "metric": train.task.metric, "source": train.source})
            print(rows[-1], flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [f"# Two-stage recipe: open choices ({platform.machine()} CPU, {torch.get_num_threads()} threads)", "",
             f"Command: `python {' '.join(sys.argv)}`  ", f"Data: {rows[0]['source']} and the other tasks' files; "
             f"{args.limit} training examples per task (seeded), {args.eval_limit} dev examples; model "
             f"{hl.DEFAULT_MODEL}; 1 head epoch then 3 adapter epochs, batch 32.", "",
             "| head lr | adapter lr | head trains in stage 2 | " + " | ".join(args.tasks) + " | mean |",
             "|---|---|---|" + "---|" * (len(args.tasks) + 1)]
    for head_lr, adapter_lr, train_head in GRID:
        scores = [r["score"] for r in rows if (r["head_lr"], r["adapter_lr"], r["train_head"]) == (head_lr, adapter_lr, train_head)]
        lines.append(f"| {head_lr:g} | {adapter_lr:g} | {'yes' if train_head else 'no'} | "
                     + " | ".join(f"{100 * s:.1f}" for s in scores) + f" | {100 * sum(scores) / len(scores):.1f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print((out / "results.md").read_text())


if __name__ == "__main__":
    main()
