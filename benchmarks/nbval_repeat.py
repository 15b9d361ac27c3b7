"""Run notebooks under nbval several times in a row and write the outcome of each run to a results file:
the evidence that a notebook's checks cannot fail by chance (issue 9 asks five passes in a row of
notebooks 05 and 06).

    GLUE_DIR=/absolute/path/to/glue_data python benchmarks/nbval_repeat.py \\
        notebooks/05_tuning_patterns.ipynb notebooks/06_attention_outputs_under_finetuning.ipynb \\
        --times 5 --out results/nbval_patterns

Each run is the README's nbval command on the named notebooks, in a fresh process. The results file is
written after every run (atomically), so an interrupted series keeps what it measured; it stops at the
first failed run, which it records with pytest's summary line.
"""
import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hadamard_lite.adapter_files import atomic_write  # noqa: E402

NBVAL = ["--nbval-lax", "--nbval-sanitize-with", "notebooks/sanitize.cfg", "-p", "no:cacheprovider", "-q"]


def summary_line(output: str) -> str:
    """pytest's last line ("27 passed in 260.1s"), without the time (the table has its own)."""
    lines = [l.strip("= ") for l in output.splitlines() if re.search(r"\d+ (passed|failed|error)", l)]
    return re.sub(r" in [\d.]+s.*$", "", lines[-1]) if lines else "no pytest summary (see its output)"


def describe_machine() -> str:
    import torch
    cpu = "CPU " + platform.machine() + f", {os.cpu_count()} cores"
    return (f"{cpu}, torch {torch.__version__} with {torch.get_num_threads()} threads, float32; "
            f"GLUE_DIR {'set' if os.environ.get('GLUE_DIR') else 'not set (the built-in sample)'}")


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    return (done.stdout.strip() or "unknown") + (" with uncommitted changes" if dirty.stdout.strip() else "")


def render(notebooks: list, rows: list, times: int, header: dict) -> str:
    passed = sum(r["ok"] for r in rows)
    verdict = (f"{passed} of {times} runs passed in a row" if passed == len(rows) == times else
               f"stopped: run {len(rows)} failed" if rows and not rows[-1]["ok"] else
               f"{len(rows)} of {times} runs done so far, all passed")
    return "\n".join([
        f"# {', '.join(Path(n).stem for n in notebooks)} under nbval, {times} times in a row\n",
        "Command (from the repository root; the load average below says how busy the machine was):\n",
        f"    {header['command']}\n",
        f"Machine: {header['machine']}; load average {header['load']} at the start; commit {header['commit']}; "
        f"{header['date']}.\n",
        f"**{verdict}.**\n",
        "| run | pytest | seconds |", "|---|---|---|",
        *[f"| {i} | {r['summary']} | {r['seconds']:.0f} |" for i, r in enumerate(rows, 1)], ""])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+")
    parser.add_argument("--times", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True, help="folder for results.md")
    args = parser.parse_args()
    if args.times < 1:
        parser.error(f"--times must be at least 1 (got {args.times})")
    missing = [n for n in args.notebooks if not (ROOT / n).is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)} (paths are relative to the repository root)")
    header = {"command": "python benchmarks/nbval_repeat.py " + " ".join(sys.argv[1:]), "machine": describe_machine(),
              "load": " ".join(f"{x:.1f}" for x in os.getloadavg()), "commit": commit(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    rows = []
    for i in range(1, args.times + 1):
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "pytest", *args.notebooks, *NBVAL], cwd=ROOT,
                              capture_output=True, text=True)
        rows.append({"ok": done.returncode == 0, "summary": summary_line(done.stdout),
                     "seconds": time.perf_counter() - started})
        print(f"run {i}: {rows[-1]['summary']} ({rows[-1]['seconds']:.0f} s)", flush=True)
        text = render(args.notebooks, rows, args.times, header)
        args.out.mkdir(parents=True, exist_ok=True)
        atomic_write(args.out / "results.md", lambda tmp: Path(tmp).write_text(text))
        if not rows[-1]["ok"]:
            print(done.stdout[-3000:] + done.stderr[-3000:])
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
