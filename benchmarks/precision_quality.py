"""Does bf16 autocast cost quality? The two-stage Hadamard recipe and full fine-tuning in float32
and in bf16 on two tasks, three seeds each, full training sets, scored on the dev sets.

    python benchmarks/precision_quality.py --out results/precision_quality_gpu       # a GPU: minutes

bf16 may become a default only where its scores sit inside the seed-to-seed spread of float32.
Rates are the protocol's defaults (the CLI's 1e-2 for the adapter, 5e-5 for full fine-tuning),
not tuned: the question is the difference between precisions, not the best score.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from glue_protocol import data_for, machine_name, run_one  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hadamard_lite as hl  # noqa: E402
from hadamard_lite.adapter_files import atomic_write  # noqa: E402

RATES = {"hadamard2": 1e-2, "full": 5e-5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="results/precision_quality")
    parser.add_argument("--tasks", nargs="+", default=["rte", "mrpc"])
    parser.add_argument("--methods", nargs="+", default=list(RATES), choices=list(RATES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0, help="cap the data (smoke tests only)")
    parser.add_argument("--summarize", action="store_true", help="only write results.md from results.json")
    args = parser.parse_args()
    if args.summarize:
        out = Path(args.out)
        return write_table(out, json.loads((out / "results.json").read_text())["rows"])
    args.sst2_limit, args.progress = 0, False
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.json"
    rows = json.loads(results_path.read_text())["rows"] if results_path.is_file() else []  # resume
    done = {(r["task"], r["method"], r["precision"], r["seed"]) for r in rows}
    tokenizer = hl.load_tokenizer()
    for task in args.tasks:
        data = data_for(task, args)
        for method in args.methods:
            for precision in ("fp32", "bf16"):
                for seed in range(args.seeds):
                    if (task, method, precision, seed) in done:
                        continue
                    args.precision = precision
                    record, _ = run_one({"task": task, "method": method, "kind": "final", "seed": seed},
                                        RATES[method], data, tokenizer, args)
                    rows.append(record)
                    print(f"{task} {method} {precision} seed {seed}: {record['score']:.4f}", flush=True)
                    meta = {"command": "python " + " ".join(sys.argv), "machine": machine_name(), "torch": torch.__version__}
                    atomic_write(results_path, lambda tmp: Path(tmp).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1)))
    write_table(out, rows)


def write_table(out: Path, rows: list) -> None:
    meta = json.loads((out / "results.json").read_text())["meta"]
    lines = [f"# bf16 vs float32 quality ({meta['machine']})", "", f"Command: `{meta['command']}`  ",
             f"torch {meta['torch']}; torch threads {', '.join(sorted({str(r.get('threads')) for r in rows}))}; "
             "precision as in each column (bf16: autocast, float32 master weights); full training and dev sets; "
             "scores x100, mean ± sd over seeds.", "",
             "| task | method | float32 | bf16 | difference | inside seed spread? |", "|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows):
            s = {p: [100 * r["score"] for r in rows if (r["task"], r["method"], r["precision"]) == (task, method, p)]
                 for p in ("fp32", "bf16")}
            if len(s["fp32"]) < 2 or len(s["bf16"]) < 2:
                continue
            m = {p: statistics.mean(v) for p, v in s.items()}
            sd = {p: statistics.stdev(v) for p, v in s.items()}
            diff = m["bf16"] - m["fp32"]
            inside = abs(diff) <= max(sd["fp32"], sd["bf16"])
            lines.append(f"| {task} | {method} | {m['fp32']:.1f} ± {sd['fp32']:.1f} | {m['bf16']:.1f} ± {sd['bf16']:.1f} "
                         f"| {diff:+.1f} | {'yes' if inside else 'no'} |")
    lines += ["", "'Inside seed spread' means |difference of means| <= the larger of the two standard deviations."]
    text = "\n".join(lines) + "\n"
    atomic_write(out / "results.md", lambda tmp: Path(tmp).write_text(text))
    print(text)


if __name__ == "__main__":
    main()
