"""One measured time per notebook, in one place: notebooks/timings.json (written by
``python notebooks/timings.py`` from an nbval run); the README and the notebook headers quote it."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = json.loads((ROOT / "notebooks" / "timings.json").read_text())
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_timings_say_how_they_were_measured():
    assert {"command", "machine", "precision", "date", "load_average_at_start", "minutes", "cpu_minutes",
            "total_minutes"} <= set(TIMINGS)
    assert set(TIMINGS["minutes"]) == set(TIMINGS["cpu_minutes"])
    assert TIMINGS["total_minutes"] == round(sum(TIMINGS["minutes"].values()), 1)


def test_notebook_headers_quote_the_timings_file():
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text())["cells"]
        quoted = re.findall(r"\*Time:\* ([\d.]+) minutes", "".join(cells[0]["source"]))
        if path.name in TIMINGS["minutes"]:
            assert quoted == [str(TIMINGS["minutes"][path.name])], f"{path.name} quotes {quoted}; run python notebooks/timings.py --quote-only"
        else:
            assert not quoted and "*Time:* not measured yet" in "".join(cells[0]["source"]), (
                f"{path.name} quotes a time that notebooks/timings.json lacks; run python notebooks/timings.py {path.name}")
        # nbconvert's per-cell timestamps would be a third, different timing: they are not committed
        assert not any("execution" in c.get("metadata", {}) for c in cells), (
            f"{path.name} carries execution timestamps; execute it with jupyter nbconvert --to notebook --execute "
            "--inplace --ExecutePreprocessor.record_timing=False")


def test_readme_table_quotes_the_timings_file():
    readme = (ROOT / "README.md").read_text()
    if all(p.name in TIMINGS["minutes"] for p in NOTEBOOKS):
        total = re.search(r"The whole series took ([\d.]+) minutes", readme)
        assert total and total.group(1) == str(TIMINGS["total_minutes"])
    else:
        assert "The whole series is not measured yet" in readme
    for name, minutes in TIMINGS["minutes"].items():
        row = re.search(rf"\]\(notebooks/{re.escape(name)}\) \|[^|\n]*\| ([\d.]+) \|", readme)
        assert row, f"the README's notebook table has no row for {name}"
        assert row.group(1) == str(minutes), f"README quotes {row.group(1)} minutes for {name}, timings.json {minutes}"


def test_a_header_says_alone_only_when_the_machine_was_idle():
    import importlib.util
    spec = importlib.util.spec_from_file_location("timings", ROOT / "notebooks" / "timings.py")
    timings = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(timings)
    for path in NOTEBOOKS:
        if path.name not in TIMINGS["minutes"]:
            continue
        header = "".join(json.loads(path.read_text())["cells"][0]["source"])
        load = timings._load_when_measured(TIMINGS, path.name)
        assert ("measured alone" in header) == (load is not None and load <= timings.BUSY), (
            f"{path.name}'s header does not match the load {load} it was measured at; run python notebooks/timings.py --quote-only")
