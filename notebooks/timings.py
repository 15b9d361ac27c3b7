"""Measure how long each notebook takes under nbval, write it to one file, and quote it from there.

    python notebooks/timings.py              # run nbval over notebooks/NN_*.ipynb, write notebooks/timings.json,
                                             # then copy the minutes into the README table and the notebook headers
    python notebooks/timings.py --quote-only # only copy the minutes from timings.json (no run)

One number per notebook, in one place: the wall-clock minutes of its cells under nbval (pytest's
``--durations``, summed), which is what a student waits. Run it alone on the machine: other jobs slow
the wall clock down, so the load average at the start is written beside it (and a warning printed when
the machine is busy), with the CPU time (user + system) of nbval and the kernel, which load hardly changes. ``tests/test_timings.py`` fails when the README or a
notebook header quotes anything else.
"""
import argparse
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ROOT / "notebooks" / "timings.json"
NBVAL = ["--nbval-lax", "--nbval-sanitize-with", "notebooks/sanitize.cfg", "-p", "no:cacheprovider"]
HEADER = re.compile(r"\*Time:\*[^\n]*")  # the line in each notebook's first cell that quotes the time
BUSY = 1.0  # a load average above this at the start means other jobs shared the machine
DURATION = re.compile(r"^\s*([\d.]+)s\s+(?:setup|call|teardown)\s+notebooks/(\d\d_[\w]+\.ipynb)::", re.M)


def measure(notebooks: list) -> dict:
    """Run nbval on each notebook in its own pytest process; per notebook, the wall-clock minutes
    of its cells (pytest's durations, kernel start included) and the CPU minutes (user + system)
    that pytest and the notebook's kernel used."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load is not None and load > BUSY:
        print(f"warning: load average {load:.1f} at start: other jobs will slow the wall clock down; "
              "measure alone on the machine", file=sys.stderr)
    started = time.time()
    wall, cpu = {}, {}
    for path in notebooks:
        command = [sys.executable, "-m", "pytest", str(path), *NBVAL, "--durations=0", "-q"]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if run.returncode != 0:
            sys.exit(f"nbval failed on {path.name}, so no timings were written:\n{run.stdout[-3000:]}")
        seconds = [float(value) for value, name in DURATION.findall(run.stdout) if name == path.name]
        if not seconds:
            sys.exit(f"pytest reported no durations for {path.name}; is nbval installed?")
        wall[path.name] = round(sum(seconds) / 60, 1)
        cpu[path.name] = round((after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / 60, 1)
    return {"command": "python notebooks/timings.py  (per notebook: " + " ".join(
                ["python -m pytest", "notebooks/NN_name.ipynb", *NBVAL, "--durations=0"]) + ")",
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores, torch threads {_threads()}",
            "precision": "fp32 (the trainer's choice on this CPU)",
            "glue": os.environ.get("GLUE_DIR", "not set (built-in sample)"),
            "load_average_at_start": load,  # other jobs on the machine slow the wall clock down
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started)),
            "minutes": wall,  # what the README and the headers quote: wall-clock minutes
            "cpu_minutes": cpu,
            "total_minutes": round(sum(wall.values()), 1), "total_cpu_minutes": round(sum(cpu.values()), 1)}


def _threads() -> int:
    import torch
    return torch.get_num_threads()


def _load_when_measured(timings: dict, name: str):
    """The load average at the start of the last sitting that measured ``name`` (None if not recorded)."""
    sittings = [r for r in timings.get("runs", []) if name in r.get("notebooks", [])]
    return sittings[-1]["load_average_at_start"] if sittings else timings.get("load_average_at_start")


def quote(timings: dict) -> None:
    """Copy the minutes into the README's notebook table and each notebook's ``*Time:*`` line."""
    sys.path.insert(0, str(ROOT))
    from hadamard_lite.adapter_files import atomic_write

    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        minutes = timings["minutes"].get(path.name)
        notebook = json.loads(path.read_text())
        first = "".join(notebook["cells"][0]["source"])
        load = _load_when_measured(timings, path.name)
        if load is None:
            how = "load not recorded"
        elif load <= BUSY:
            how = "measured alone on the machine"
        else:
            how = f"measured with a load average of {load:.1f} at the start, so alone it may be faster"
        line = (f"*Time:* {minutes} minutes under nbval on a 2-core CPU ({how}: "
                "`notebooks/timings.json`, which also gives the CPU time and the load)." if minutes is not None else
                "*Time:* not measured yet for this version (`python notebooks/timings.py` writes it).")
        if HEADER.search(first) and HEADER.search(first).group(0) != line:
            # a list of lines, as Jupyter writes it, so the diff shows only the changed line
            notebook["cells"][0]["source"] = HEADER.sub(lambda m: line, first).splitlines(keepends=True)
            atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"))
    readme = ROOT / "README.md"
    text = readme.read_text()
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        minutes = timings["minutes"].get(path.name, "not measured")
        # | 01 | [title](notebooks/01_x.ipynb) | what | MINUTES | ...
        text = re.sub(rf"(\]\(notebooks/{re.escape(path.name)}\) \|[^|\n]*\| )([\d.]+|not measured)( \|)",
                      lambda m: f"{m.group(1)}{minutes}{m.group(3)}", text)
    missing = [p.name for p in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")) if p.name not in timings["minutes"]]
    sittings = len(timings.get("runs", [])) or 1
    total = (f"The whole series took {timings['total_minutes']} minutes" +
             (f" (summed over {sittings} sittings, each listed in `notebooks/timings.json`)" if sittings > 1 else "") + "."
             if not missing else f"The whole series is not measured yet (missing: {', '.join(missing)}).")
    text = re.sub(r"The whole series (took [\d.]+ (?:CPU )?minutes(?: \(summed over \d+ sittings[^)]*\))?"
                  r"|is not measured yet \([^)]*\))\.", lambda m: total, text)
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
        chosen_names = [p.name for p in chosen]
        if args.notebooks and TIMINGS.is_file():  # a partial run updates those notebooks only
            old = json.loads(TIMINGS.read_text())
            for key in ("minutes", "cpu_minutes"):
                measured[key] = {**old.get(key, {}), **measured[key]}
            measured["total_minutes"] = round(sum(measured["minutes"].values()), 1)
            measured["total_cpu_minutes"] = round(sum(measured["cpu_minutes"].values()), 1)
            earlier = old.get("runs") or [{"date": old.get("date"), "load_average_at_start": old.get("load_average_at_start"),
                                           "notebooks": sorted(old.get("minutes", {}))}]  # the run before the first partial one
            measured["runs"] = earlier + [{"date": measured["date"], "load_average_at_start":
                                                       measured["load_average_at_start"], "notebooks": list(chosen_names)}]
        atomic_write(TIMINGS, lambda tmp: Path(tmp).write_text(json.dumps(measured, indent=1) + "\n"))
    timings = json.loads(TIMINGS.read_text())
    quote(timings)
    print(json.dumps(timings["minutes"], indent=1), "\ntotal", timings["total_minutes"], "minutes")


if __name__ == "__main__":
    main()
