"""Measure how long each notebook takes under nbval, write it to one file, and quote it from there.

    python notebooks/timings.py              # run nbval over notebooks/NN_*.ipynb, write notebooks/timings.json,
                                             # then copy the minutes into the README table and the notebook headers
    python notebooks/timings.py --quote-only # only copy the minutes from timings.json (no run)

One number per notebook, in one place: the sum of its cells' durations as pytest reports them
(``--durations=0``), kernel start included. ``tests/test_timings.py`` fails when the README or a
notebook header quotes anything else.
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ROOT / "notebooks" / "timings.json"
NBVAL = ["--nbval-lax", "--nbval-sanitize-with", "notebooks/sanitize.cfg", "-p", "no:cacheprovider"]
HEADER = re.compile(r"\*Time:\*[^\n]*")  # the line in each notebook's first cell that quotes the time
DURATION = re.compile(r"^\s*([\d.]+)s\s+(?:setup|call|teardown)\s+notebooks/(\d\d_[\w]+\.ipynb)::", re.M)


def measure(notebooks: list) -> dict:
    command = [sys.executable, "-m", "pytest", *map(str, notebooks), *NBVAL, "--durations=0", "-q"]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    started = time.time()
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"nbval failed, so no timings were written:\n{run.stdout[-3000:]}")
    seconds = {}
    for value, name in DURATION.findall(run.stdout):
        seconds[name] = seconds.get(name, 0.0) + float(value)
    missing = [p.name for p in notebooks if p.name not in seconds]
    if missing:
        sys.exit(f"pytest reported no durations for {missing}; is nbval installed?")
    return {"command": "python notebooks/timings.py  (" + " ".join(["python -m pytest", "notebooks/NN_*.ipynb", *NBVAL,
                                                                    "--durations=0"]) + ")",
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch threads {_threads()}",
            "precision": "fp32 (the trainer's choice on this CPU)",
            "glue": os.environ.get("GLUE_DIR", "not set (built-in sample)"),
            "load_average_at_start": load, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            "minutes": {name: round(s / 60, 1) for name, s in sorted(seconds.items())},
            "total_minutes": round(sum(seconds.values()) / 60, 1)}


def _threads() -> int:
    import torch
    return torch.get_num_threads()


def quote(timings: dict) -> None:
    """Copy the minutes into the README's notebook table and each notebook's ``*Time:*`` line."""
    sys.path.insert(0, str(ROOT))
    from hadamard_lite.adapter_files import atomic_write

    for name, minutes in timings["minutes"].items():
        path = ROOT / "notebooks" / name
        notebook = json.loads(path.read_text())
        first = "".join(notebook["cells"][0]["source"])
        line = (f"*Time:* {minutes} minutes on a 2-core CPU under nbval (`notebooks/timings.json`); "
                "on a GPU it uses the full training sets where it trains.")
        if HEADER.search(first) and HEADER.search(first).group(0) != line:
            notebook["cells"][0]["source"] = HEADER.sub(lambda m: line, first)
            atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"))
    readme = ROOT / "README.md"
    text = readme.read_text()
    for name, minutes in timings["minutes"].items():
        # | 01 | [title](notebooks/01_x.ipynb) | what | MINUTES | ...
        text = re.sub(rf"(\]\(notebooks/{re.escape(name)}\) \|[^|\n]*\| )[\d.]+( \|)", rf"\g<1>{minutes}\g<2>", text)
    text = re.sub(r"the whole series took [\d.]+ minutes", f"the whole series took {timings['total_minutes']} minutes", text)
    atomic_write(readme, lambda tmp: Path(tmp).write_text(text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quote-only", action="store_true", help="copy the numbers from timings.json, run nothing")
    parser.add_argument("notebooks", nargs="*", help="only these notebooks (default: all NN_*.ipynb)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from hadamard_lite.adapter_files import atomic_write

    if not args.quote_only:
        chosen = [ROOT / "notebooks" / Path(n).name for n in args.notebooks] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        measured = measure(chosen)
        if args.notebooks and TIMINGS.is_file():  # a partial run updates those notebooks only
            old = json.loads(TIMINGS.read_text())
            measured["minutes"] = {**old["minutes"], **measured["minutes"]}
            measured["total_minutes"] = round(sum(measured["minutes"].values()), 1)
        atomic_write(TIMINGS, lambda tmp: Path(tmp).write_text(json.dumps(measured, indent=1) + "\n"))
    timings = json.loads(TIMINGS.read_text())
    quote(timings)
    print(json.dumps(timings["minutes"], indent=1), "\ntotal", timings["total_minutes"], "minutes")


if __name__ == "__main__":
    main()
