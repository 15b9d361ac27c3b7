"""The project's own files: one dependency list, a light core, a working demo."""
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_package_with_its_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert any(str(d).startswith("python") for d in deps) and "pip" in deps
    pip_part = next(d["pip"] for d in deps if isinstance(d, dict))
    # The pip part must be this package with its dev extra, so the dependency list lives in
    # pyproject.toml alone.
    assert pip_part == ['-e ".[dev]"']
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_pin = next(d for d in project["dependencies"] if d.startswith("torch"))
    conda_torch = next(d for d in deps if str(d).startswith("pytorch"))
    assert conda_torch.removeprefix("pytorch") == torch_pin.removeprefix("torch")
    assert {"pytest", "nbval", "jupyter", "matplotlib"} <= {
        d.split(">")[0].split("=")[0] for d in project["optional-dependencies"]["dev"]}


def test_core_imports_without_heavy_extras(tmp_path):
    code = f"""
import sys
for name in ["datasets", "matplotlib", "sklearn", "pandas", "peft"]:
    sys.modules[name] = None  # importing any of these now fails
sys.path.insert(0, {str(ROOT)!r})
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification
import hadamard_lite as hl
from hadamard_lite import adapter, freezing, adapter_files, models
model = AutoModelForSequenceClassification.from_config(AutoConfig.for_model(
    "bert", hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20, vocab_size=50))
hl.add_hadamard_adapter(model)
hl.freeze_for_stage(model, "adapter")
hl.save_adapter(model, {str(tmp_path)!r})
hl.load_adapter(model, {str(tmp_path)!r})
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_readme_and_ci_run_the_same_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    test_line = next(line for line in ci.splitlines() if line.startswith("python3 -m pytest"))
    command = test_line.replace("python3 ", "python ").replace(" -p no:cacheprovider", "")
    assert command in readme


def test_notebook_data_shipped_in_the_package_matches_results():
    """Notebooks 03, 05 and 06 read real-scale results from the package (Colab has no results/ folder):
    each packaged file must be what its benchmark last wrote under results/."""
    shipped = ROOT / "hadamard_lite" / "measured"
    patterns = shipped / "patterns_cpu.json"
    if patterns.exists():
        assert patterns.read_bytes() == (ROOT / "results" / "patterns_cpu" / "results.json").read_bytes()
    for name in ("glue_protocol_cpu", "glue_protocol_gpu"):
        packaged = json.loads((shipped / f"{name}.json").read_text())
        assert packaged["summary"] == json.loads((ROOT / "results" / name / "summary.json").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "measured/*.json" in project["tool"]["setuptools"]["package-data"]["hadamard_lite"]


def test_notebook_extra_is_what_the_notebooks_import():
    """Colab installs the package with its `notebooks` extra only: every module a notebook imports
    must come from the package's dependencies or that extra."""
    import ast
    import json

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {d.split(">")[0].split("=")[0].split("[")[0].replace("-", "_")
             for d in project["dependencies"] + project["optional-dependencies"]["notebooks"]}
    allowed = names | {"hadamard_lite", "os", "sys", "json", "pathlib", "time", "copy", "tempfile", "subprocess",
                       "importlib", "math", "random", "collections", "functools", "itertools"} | set(sys.stdlib_module_names)
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            source = "\n".join(l[:len(l) - len(l.lstrip())] + "pass" if l.lstrip().startswith(("!", "%")) else l
                               for l in "".join(cell["source"]).splitlines())
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                    for module in modules:
                        assert module.split(".")[0] in allowed, f"{path.name} imports {module}, which Colab's install lacks"


def test_notebooks_05_and_06_show_the_packaged_verdicts():
    """Their stored outputs are what a reader sees on GitHub: after `patterns.py --analyse` changes a
    verdict, notebooks 05 and 06 must be executed again, or this fails (their prose is read beside them)."""
    patterns = ROOT / "hadamard_lite" / "measured" / "patterns_cpu.json"
    verdicts = [line.replace("**", "") for line in json.loads(patterns.read_text())["conclusions"]]
    for name, mine in (("05_tuning_patterns", lambda v: not v.startswith(("RQ", "Fully"))),
                       ("06_attention_outputs_under_finetuning", lambda v: v.startswith(("RQ", "Fully")))):
        notebook = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())
        shown = "".join("".join(out.get("text", "")) for cell in notebook["cells"] if cell["cell_type"] == "code"
                        for out in cell.get("outputs", []))
        missing = [v[:80] for v in verdicts if mine(v) and f"• {v}" not in shown]
        assert not missing, f"notebooks/{name}.ipynb shows older verdicts than the packaged results: {missing}"
