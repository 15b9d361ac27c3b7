"""Student versions of the notebooks: built by notebooks/make_student_versions.py, solutions out,
every stub raises a clear "not done yet", the committed copies are up to date, and a student
notebook runs with a kernel, stopping only where an exercise is not done."""
import copy
import importlib.util
import os
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]

NOTEBOOKS = ROOT / "notebooks"
STUB = re.compile(r'raise NotImplementedError\("Exercise (\d+) not done yet: (?:[^"\\]|\\.)+"\)')
# Notebooks whose student version a kernel runs here (each must be quick).
KERNEL_RUN = ["08_build_it_yourself.ipynb"]

spec = importlib.util.spec_from_file_location("make_student_versions", NOTEBOOKS / "make_student_versions.py")
builder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(builder)


def solution_lines(teacher) -> set:
    """Lines that only solutions contain (long enough to mean something)."""
    inside, outside, answers = set(), set(), set()
    for cell in teacher.cells:
        tagged = builder.DROPPED_TAGS & set(cell.metadata.get("tags", []))
        in_block = False
        for line in cell.source.splitlines():
            text = line.strip()
            if builder.BEGIN.match(line):
                in_block = True
            elif builder.END.match(line):
                in_block = False
            elif tagged:
                answers.add(text)
            else:
                (inside if in_block else outside).add(text)
    return {line for line in (inside | answers) - outside if len(line) >= 12}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    texts = builder.build(NOTEBOOKS, out)
    builder.write(texts, out)
    return out


def test_every_teacher_notebook_gets_a_student_version(built):
    teachers = builder.teacher_notebooks(NOTEBOOKS)
    assert "08_build_it_yourself.ipynb" in {p.name for p in teachers}
    assert sorted(p.name for p in built.glob("*.ipynb")) == [p.name for p in teachers]


@pytest.mark.parametrize("name", [p.name for p in builder.teacher_notebooks(NOTEBOOKS)])
def test_no_solution_survives(built, name):
    teacher = nbformat.read(NOTEBOOKS / name, as_version=4)
    student = nbformat.read(built / name, as_version=4)
    text = "\n".join(cell.source for cell in student.cells)
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    assert not [c for c in student.cells if builder.DROPPED_TAGS & set(c.metadata.get("tags", []))]
    lines = {line.strip() for cell in student.cells for line in cell.source.splitlines()}
    leaked = sorted(solution_lines(teacher) & lines)
    assert not leaked, f"solution text left in the student version of {name}: {leaked[:3]}"
    # The note on top, and no outputs left on exercise cells.
    assert student.cells[0].cell_type == "markdown" and "Student version" in student.cells[0].source
    assert f"](../{name})" in student.cells[0].source
    for cell in student.cells:
        if cell.cell_type == "code" and STUB.search(cell.source):
            assert cell.outputs == [] and cell.execution_count is None
    # As many stubs as solution blocks.
    blocks = sum(cell.source.count("### BEGIN SOLUTION") for cell in teacher.cells if cell.cell_type == "code")
    assert len(STUB.findall(text)) == blocks


def test_notebook_08_has_stubs_for_all_six_exercises(built):
    text = "\n".join(c.source for c in nbformat.read(built / "08_build_it_yourself.ipynb", as_version=4).cells)
    assert {int(n) for n in STUB.findall(text)} == set(range(1, 7))
    assert "### Answers" not in text  # the questionnaire answers are dropped


def test_committed_student_versions_are_up_to_date():
    # Fails whenever a teacher notebook changed without rebuilding: run
    # `python notebooks/make_student_versions.py` and commit notebooks/student/.
    stale = builder.out_of_date(builder.build(NOTEBOOKS, builder.STUDENT_DIR), builder.STUDENT_DIR)
    assert not stale, f"out of date: {[p.name for p in stale]}; run python notebooks/make_student_versions.py"


def test_stub_replaces_only_the_solution():
    source = "\n".join([
        "def f(x):",
        "    y = x + 1",
        "    ### BEGIN SOLUTION exercise 4: double it",
        "    return 2 * y",
        "    ### END SOLUTION",
        "",
        "# exercise 7: the answer",
        "### BEGIN SOLUTION",
        "answer = 42",
        "### END SOLUTION",
        "print(answer)",
        "### BEGIN SOLUTION  use a loop",
        "pass",
        "### END SOLUTION",
    ])
    out, count = builder.stub_solutions(source, "cell", 0)
    assert count == 3
    assert out.split("\n") == [
        "def f(x):",
        "    y = x + 1",
        '    raise NotImplementedError("Exercise 4 not done yet: double it")',
        "",
        "# exercise 7: the answer",
        f'raise NotImplementedError("Exercise 7 not done yet: {builder.DEFAULT_HINT}")',
        "print(answer)",
        'raise NotImplementedError("Exercise 7 not done yet: use a loop")',
    ]
    with pytest.raises(NotImplementedError, match="Exercise 4 not done yet: double it"):
        namespace = {}
        exec(out.split("\n# exercise 7")[0], namespace)
        namespace["f"](1)


@pytest.mark.parametrize("source, message", [
    ("### BEGIN SOLUTION\nx = 1", "never closed"),
    ("x = 1\n### END SOLUTION", "without a ### BEGIN SOLUTION"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another solution block"),
])
def test_broken_markers_are_clear_errors(source, message):
    with pytest.raises(ValueError, match=message):
        builder.stub_solutions(source, "nb.ipynb, cell 3", 0)


def test_student_version_of_a_small_notebook():
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("[open](https://colab.research.google.com/github/o/r/blob/main/notebooks/01_x.ipynb)"
                                      " and [results](../results/a.md) and [next](02_y.ipynb)"),
        nbformat.v4.new_code_cell("### BEGIN SOLUTION exercise 1: add\nz = 1 + 1\n### END SOLUTION", execution_count=3,
                                  outputs=[nbformat.v4.new_output("stream", text="2")]),
        nbformat.v4.new_code_cell("print(z)", execution_count=4, outputs=[nbformat.v4.new_output("stream", text="2")]),
        nbformat.v4.new_markdown_cell("1. two", metadata={"tags": ["answers"]}),
        nbformat.v4.new_code_cell("z = 2", metadata={"tags": ["solution"]}),
    ])
    student = builder.student_version(nb, "01_x.ipynb")
    sources = [c.source for c in student.cells]
    assert len(sources) == 4 and "Student version" in sources[0]
    assert "notebooks/student/01_x.ipynb" in sources[1] and "](../../results/a.md)" in sources[1]
    assert "](02_y.ipynb)" in sources[1]
    assert sources[2] == 'raise NotImplementedError("Exercise 1 not done yet: add")'
    assert student.cells[2].outputs == [] and student.cells[2].execution_count is None
    assert student.cells[3].outputs  # outputs of other cells stay
    assert builder.render(student) == builder.render(builder.student_version(nb, "01_x.ipynb"))  # deterministic


def run_student_notebook(student, teacher, cwd):
    """Run every code cell of ``student`` in one kernel, as a student would. A cell may stop only with an
    exercise stub's NotImplementedError; then the teacher versions of the exercise cells run so far go in
    (the student did the exercise) and the cell runs again. Returns the exercise numbers that stopped it."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    teacher_cells = {cell.id: cell for cell in teacher.cells}
    client = NotebookClient(student, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    stopped, pending = [], []
    with client.setup_kernel():
        for index, cell in enumerate(student.cells):
            if cell.cell_type != "code":
                continue
            solved = teacher_cells[cell.id]
            if solved.source != cell.source:
                pending.append(solved)
            try:
                client.execute_cell(cell, index)
                continue
            except CellExecutionError as error:
                assert error.ename == "NotImplementedError", f"cell {index} failed: {error.ename}: {error.evalue}"
                stub = re.match(r"Exercise (\d+) not done yet: \S", error.evalue)
                assert stub, f"cell {index}: NotImplementedError without the stub's message: {error.evalue}"
                stopped.append(int(stub[1]))
            for solution in pending:  # write the exercises done so far, then try the cell again
                client.execute_cell(copy.deepcopy(solution), index)
            pending = []
            if solved.source == cell.source:
                client.execute_cell(cell, index)
    return stopped


@pytest.mark.parametrize("name", KERNEL_RUN)
def test_student_notebook_runs_and_stops_only_at_exercises(built, name, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    student = nbformat.read(built / name, as_version=4)
    teacher = nbformat.read(NOTEBOOKS / name, as_version=4)
    stopped = run_student_notebook(student, teacher, built)
    stubs = {int(n) for c in student.cells for n in STUB.findall(c.source)}
    # Every exercise stopped the run with its own message, in the order of the notebook.
    assert set(stopped) == stubs and stopped == sorted(stopped)
