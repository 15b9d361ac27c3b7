"""Run notebooks top to bottom without Jupyter: each notebook's code cells in one namespace, in a
process of its own, several notebooks at once. For machines that have PyTorch but not Jupyter or
nbval (the lent GPU machine); everywhere else the README's nbval command is the real check.

    HADAMARD_LITE_SUBSETS=1 python benchmarks/run_notebooks.py notebooks/0*.ipynb --timeout 240

Prints one line per notebook (passed, failed in cell N with the error, or timed out) and exits 1
if any did not pass. Figures are drawn with matplotlib's Agg backend and discarded.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RUNNER = r"""
import json, sys, time, traceback
import matplotlib
matplotlib.use("Agg")
nb = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__", "display": print}
code = [c for c in nb["cells"] if c["cell_type"] == "code"]
for number, cell in enumerate(nb["cells"]):
    if cell["cell_type"] != "code":
        continue
    # Shell and magic lines (the Colab install cell) mean nothing outside IPython: keep their indentation.
    source = "\n".join(l[:len(l) - len(l.lstrip())] + "pass" if l.lstrip().startswith(("!", "%")) else l
                       for l in "".join(cell["source"]).splitlines())
    if "raises-exception" in cell.get("metadata", {}).get("tags", []):
        continue
    started = time.perf_counter()
    try:
        exec(compile(source, f"{sys.argv[1]} cell {number}", "exec"), namespace)
    except Exception as error:
        traceback.print_exc()
        print(f"RESULT failed in cell {number}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")
        sys.exit(1)
    print(f"cell {number}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
print("RESULT passed")
"""


def run(path: Path, timeout: float, log_dir: Path | None) -> tuple:
    started = time.perf_counter()
    env = {**os.environ, "MPLBACKEND": "Agg"}
    try:
        done = subprocess.run([sys.executable, "-c", RUNNER, path.name], cwd=path.parent, env=env,
                              capture_output=True, text=True, timeout=timeout)
        lines = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")]
        verdict = lines[-1][7:] if lines else f"failed: exit status {done.returncode}, no result line"
        log = done.stdout + done.stderr
    except subprocess.TimeoutExpired as error:
        verdict = f"timed out after {timeout:.0f} s"
        text = lambda b: b.decode(errors="replace") if isinstance(b, bytes) else (b or "")
        log = text(error.stdout) + text(error.stderr)
    if log_dir:
        (log_dir / (path.stem + ".log")).write_text(log)
    return path.name, verdict, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=float, default=600, help="seconds per notebook")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--logs", type=Path, default=None, help="folder for each notebook's full output")
    args = parser.parse_args()
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(args.parallel) as pool:
        results = list(pool.map(lambda p: run(p.resolve(), args.timeout, args.logs), args.notebooks))
    for name, verdict, seconds in results:
        print(f"{name:50s} {verdict} ({seconds:.0f} s)", flush=True)
    return 0 if all(v == "passed" for _, v, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
