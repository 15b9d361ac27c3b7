"""Build the student versions of the notebooks: solutions out, clear "not done yet" stubs in.

    python notebooks/make_student_versions.py            # writes notebooks/student/NN_*.ipynb
    python notebooks/make_student_versions.py --check    # exit 1 if the committed ones are out of date

The teacher notebooks (``notebooks/NN_*.ipynb``, executed, with outputs) mark each solution the
nbgrader way, inside a code cell:

    def grad_fn(a, upstream):
        ### BEGIN SOLUTION exercise 1: sum over batch and tokens
        return (upstream * a).sum((0, 1)), upstream.sum((0, 1))
        ### END SOLUTION

The student version keeps the code before BEGIN and after END and puts, at the marker's indent,
``raise NotImplementedError("Exercise 1 not done yet: sum over batch and tokens")``. The text after
the marker is optional: the exercise number is taken from it ("exercise N: hint"), else from the
nearest "exercise N" above the marker in the same cell, else from counting solution blocks. Cells
tagged ``solution`` or ``answers`` (questionnaire answers) are dropped, exercise cells lose their
outputs, and a note at the top says where the teacher version is.
"""
import argparse
import copy
import json
import re
import sys
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent
STUDENT_DIR = NOTEBOOKS / "student"
DROPPED_TAGS = {"solution", "answers"}
BEGIN = re.compile(r"^(?P<indent>\s*)### BEGIN SOLUTION\b(?P<rest>.*)$")
END = re.compile(r"^\s*### END SOLUTION\s*$")
EXERCISE = re.compile(r"\bexercise\s+(\d+)\b", re.IGNORECASE)
DEFAULT_HINT = "replace this line with your code"
NOTE_ID = "student-version-note"


def teacher_notebooks(folder: Path = NOTEBOOKS) -> list:
    """The numbered notebooks of the series, in order."""
    return sorted(folder.glob("[0-9][0-9]_*.ipynb"))


def stub_solutions(source: str, where: str, count: int) -> tuple:
    """``(source with every solution block replaced by a stub, blocks seen so far)``.

    ``count`` is the number of solution blocks earlier in the notebook, for exercises the markers
    do not number. ``where`` names the cell in error messages.
    """
    lines, out, block = source.split("\n"), [], None
    for number, line in enumerate(lines, start=1):
        begin = BEGIN.match(line)
        if block is not None:
            if begin:
                raise ValueError(f"{where}, line {number}: ### BEGIN SOLUTION inside another solution block "
                                 f"(opened on line {block}); close the first with ### END SOLUTION")
            if END.match(line):
                block = None
            continue
        if END.match(line):
            raise ValueError(f"{where}, line {number}: ### END SOLUTION without a ### BEGIN SOLUTION above it")
        if not begin:
            out.append(line)
            continue
        block, count = number, count + 1
        rest = begin["rest"].strip()
        labelled = re.match(r"exercise\s+(\d+)\s*[:.\-]?\s*(.*)$", rest, re.IGNORECASE)
        if labelled:
            exercise, hint = int(labelled[1]), labelled[2]
        else:
            above = [m for kept in out for m in EXERCISE.finditer(kept)]
            exercise, hint = (int(above[-1][1]) if above else count), rest
        message = f"Exercise {exercise} not done yet: {hint or DEFAULT_HINT}"
        out.append(f"{begin['indent']}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})")
    if block is not None:
        raise ValueError(f"{where}, line {block}: ### BEGIN SOLUTION is never closed; add ### END SOLUTION after the solution")
    return "\n".join(out), count


def _student_link(text: str) -> str:
    """Colab badges and links open the student copy; other relative links go up one folder."""
    text = re.sub(r"(colab\.research\.google\.com/github/[^)\s]*/notebooks/)(\d\d_)", r"\1student/\2", text)
    # Markdown links to files outside notebooks/ ("../results/x.md", "../README.md") now need one more "../";
    # links to other notebooks of the series ("03_glue_finetuning.ipynb") find the student copy beside it.
    return re.sub(r"\]\((?!https?:|#|mailto:|/|\d\d_[^)]*\.ipynb)([^)\s]+)\)", r"](../\1)", text)


def student_version(teacher, name: str):
    """The student notebook made from ``teacher`` (an nbformat notebook named ``name``)."""
    nb = copy.deepcopy(teacher)
    cells, count = [], 0
    for index, cell in enumerate(nb.cells):
        if DROPPED_TAGS & set(cell.get("metadata", {}).get("tags", [])):
            continue
        if cell.cell_type == "markdown":
            cell.source = _student_link(cell.source)
        elif cell.cell_type == "code":
            source, new_count = stub_solutions(cell.source, f"{name}, cell {index}", count)
            if new_count > count:  # an exercise cell: its outputs would show the answer
                cell.source, count = source, new_count
                cell.outputs, cell.execution_count = [], None
                cell.metadata.pop("execution", None)
        cells.append(cell)
    note = nbformat.v4.new_markdown_cell(
        f"**Student version.** The exercise solutions are taken out: each exercise raises "
        f"`NotImplementedError(\"Exercise N not done yet: ...\")` until you write it, and the questionnaire "
        f"answers are left out. The teacher version, with solutions and answers, is [`notebooks/{name}`](../{name}). "
        f"This file is built by `python notebooks/make_student_versions.py`; edit the teacher version, not this one.")
    if nb.nbformat_minor >= 5:
        note.id = NOTE_ID
    else:
        note.pop("id", None)
    nb.cells = [note] + cells
    return nb


def render(nb) -> str:
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def build(source_dir: Path = NOTEBOOKS, out_dir: Path = STUDENT_DIR) -> dict:
    """``{output path: notebook text}`` for every teacher notebook (nothing is written)."""
    built = {}
    for path in teacher_notebooks(source_dir):
        teacher = nbformat.read(path, as_version=4)
        built[Path(out_dir) / path.name] = render(student_version(teacher, path.name))
    return built


def write(built: dict, out_dir: Path) -> None:
    """Write the built notebooks (each atomically) and remove student copies no teacher notebook makes."""
    from hadamard_lite.adapter_files import atomic_write

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, text in built.items():
        atomic_write(path, lambda tmp, text=text: Path(tmp).write_text(text, encoding="utf-8"))
    for stale in set(out_dir.glob("[0-9][0-9]_*.ipynb")) - set(built):
        stale.unlink()


def out_of_date(built: dict, out_dir: Path) -> list:
    """Student notebooks that differ from what the teacher notebooks make now, missing or stale."""
    stale = set(Path(out_dir).glob("[0-9][0-9]_*.ipynb")) - set(built)
    changed = [p for p, text in built.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
    return sorted(changed) + sorted(stale)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only check that the student versions are up to date")
    parser.add_argument("--out", type=Path, default=STUDENT_DIR, help="folder for the student notebooks")
    args = parser.parse_args(argv)
    try:
        built = build(NOTEBOOKS, args.out)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.check:
        stale = out_of_date(built, args.out)
        for path in stale:
            print(f"out of date: {path}", file=sys.stderr)
        if stale:
            print("Run `python notebooks/make_student_versions.py` and commit notebooks/student/.", file=sys.stderr)
            return 1
        print(f"{len(built)} student notebooks are up to date in {args.out}")
        return 0
    write(built, args.out)
    print(f"wrote {len(built)} student notebooks to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
