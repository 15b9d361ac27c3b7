"""Command line: the main job.

    python -m hadamard_lite train --task sst2        # two-stage training, prints one result line, saves the adapter
    python -m hadamard_lite evaluate runs/sst2       # reload the saved adapter and reproduce the dev metric
    python -m hadamard_lite demo                     # inject adapters into the bundled MiniLM and check identity
    python -m hadamard_lite predict --adapter sst2=runs/sst2 --adapter stsb=runs/stsb --input examples.jsonl
                                                     # many tasks on one model (see hadamard_lite/predict.py)

Data come from --data-dir or GLUE_DIR (the classic glue_data/ layout), else the hub, else a
small built-in sample; the result line says which. On a CPU, training uses a 2,000-example
subset unless --limit says otherwise (--limit 0: all); on a GPU, the full training set.
"""
import argparse
import json
import sys
import time
from pathlib import Path

SUMMARY_NAME = "run_summary.json"


def _percent(part, whole):
    return f"{100 * part / whole:.4f}%"


def train(args) -> int:
    import hadamard_lite as hl
    from hadamard_lite.adapter_files import atomic_write
    from hadamard_lite.data import load_glue
    from hadamard_lite.trainer import TrainConfig, pick_device, train_two_stage

    device = pick_device(args.device)
    limit = args.limit if args.limit is not None else (None if device.type == "cuda" else 2000)
    limit = limit or None  # 0 means everything
    train_data = load_glue(args.task, "train", args.data_dir, args.source, limit=limit, seed=args.seed)
    dev_data = load_glue(args.task, "dev", args.data_dir, args.source, limit=args.eval_limit, seed=args.seed)
    print(f"data: {train_data.source}: {len(train_data):,} train / {len(dev_data):,} dev examples"
          + (f" (a seeded subset of the training set: --limit 0 for all)" if limit else ""), file=sys.stderr)
    tokenizer = hl.load_tokenizer(args.model)
    model = hl.load_model(args.model, num_labels=train_data.task.num_labels)
    base_total = hl.count_parameters(model)[1]
    config = TrainConfig(batch_size=args.batch_size, max_length=args.max_length, seed=args.seed, device=args.device,
                         precision=args.precision)
    started = time.perf_counter()
    result = train_two_stage(model, tokenizer, train_data, dev_data, head_epochs=args.head_epochs,
                             adapter_epochs=args.epochs, head_lr=args.head_lr, adapter_lr=args.lr,
                             train_head=not args.freeze_head, layers=args.layers, config=config)
    seconds = time.perf_counter() - started
    trainable = hl.count_parameters(model)[0]
    stage = result["adapter"]
    metric = train_data.task.metric
    out = Path(args.output or f"runs/{train_data.task.name}")
    hl.save_adapter(model, out)
    summary = {"task": train_data.task.name, "metric": metric, "score": result["best_metric"],
               "model": args.model or hl.DEFAULT_MODEL, "source": train_data.source, "data_dir": args.data_dir,
               "source_option": args.source, "train_examples": len(train_data), "dev_examples": len(dev_data),
               "eval_limit": args.eval_limit, "seed": args.seed, "max_length": args.max_length,
               "trainable_params": trainable, "base_params": base_total, "seconds": seconds,
               "samples_per_second": stage["samples_per_second"], "device": stage["device"],
               "precision": stage["precision"], "history": {k: v["history"] for k, v in result.items() if k != "best_metric"}}
    atomic_write(out / SUMMARY_NAME, lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2) + "\n"))
    print(f"{summary['task']} | {metric} {result['best_metric']:.4f} | trainable params {trainable:,} "
          f"({_percent(trainable, base_total)}) | {seconds:.1f} s | {stage['samples_per_second']:.0f} samples/s "
          f"({stage['device']}, {stage['precision']}) | adapter saved to {out}")
    return 0


def evaluate(args) -> int:
    import hadamard_lite as hl
    from hadamard_lite.data import load_glue
    from hadamard_lite.trainer import TrainConfig, Trainer

    directory = Path(args.adapter)
    summary_path = directory / SUMMARY_NAME
    if not summary_path.is_file():
        print(f"error: no {SUMMARY_NAME} in {directory}: expected a folder written by "
              "'python -m hadamard_lite train'", file=sys.stderr)
        return 2
    summary = json.loads(summary_path.read_text())
    dev_data = load_glue(summary["task"], "dev", args.data_dir or summary["data_dir"], summary["source_option"],
                         limit=summary["eval_limit"], seed=summary["seed"])
    model = hl.load_model(summary["model"], num_labels=dev_data.task.num_labels)
    hl.load_adapter(model, directory)
    hl.freeze_for_stage(model, "adapter", train_head=True)
    trainer = Trainer(model, hl.load_tokenizer(summary["model"]), dev_data, dev_data,
                      TrainConfig(max_length=summary["max_length"], device=args.device, progress=False))
    metrics = trainer.evaluate()
    score = next(iter(metrics.values()))
    same = abs(score - summary["score"]) < 1e-3
    print(f"{summary['task']} | {summary['metric']} {score:.4f} | at training: {summary['score']:.4f} "
          f"({'reproduced' if same else 'DIFFERENT'}) | {dev_data.source}")
    return 0 if same else 1


def demo(args) -> int:
    import torch
    import hadamard_lite as hl

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


def main(argv=None) -> int:
    from hadamard_lite.glue_tasks import GLUE_TASKS

    parser = argparse.ArgumentParser(prog="python -m hadamard_lite", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    model_help = "hub id or local folder (default: the bundled all-MiniLM-L6-v2)"

    p = commands.add_parser("train", help="train a Hadamard adapter on a GLUE task (two-stage recipe)")
    p.add_argument("--task", default="sst2", choices=sorted(GLUE_TASKS))
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("--data-dir", default=None, help="a glue_data/ folder (default: $GLUE_DIR)")
    p.add_argument("--source", default="auto", choices=["auto", "tsv", "hub", "sample"])
    p.add_argument("--limit", type=int, default=None, help="training examples (default: 2000 on CPU, all on GPU; 0: all)")
    p.add_argument("--eval-limit", type=int, default=None, help="dev examples (default: all)")
    p.add_argument("--head-epochs", type=int, default=1, help="stage 1: epochs of head-only training")
    p.add_argument("--epochs", type=int, default=3, help="stage 2: epochs of adapter training")
    p.add_argument("--head-lr", type=float, default=1e-2)
    p.add_argument("--lr", type=float, default=1e-2, help="stage 2 learning rate")
    p.add_argument("--freeze-head", action="store_true", help="keep the head frozen in stage 2 (as one summary of the paper says)")
    p.add_argument("--layers", type=int, nargs="+", default=None, help="adapted layers (default: all)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"],
                   help="auto: bf16 on GPUs and CPUs with native bf16, fp16 on older GPUs, else fp32")
    p.add_argument("--output", default=None, help="where to save the adapter (default: runs/TASK)")
    p.set_defaults(run=train)

    p = commands.add_parser("evaluate", help="reload a saved adapter and evaluate it on the dev set")
    p.add_argument("adapter", nargs="?", default="runs/sst2", help="folder written by train (default: runs/sst2)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", default="auto")
    p.set_defaults(run=evaluate)

    p = commands.add_parser("demo", help="inject adapters into a pre-trained model and check identity at start")
    p.add_argument("--model", default=None, help=model_help)
    p.set_defaults(run=demo)

    from hadamard_lite.predict import add_predict_command
    add_predict_command(commands)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
