"""The project's own files: one dependency list, a light core, a working demo."""
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import readme_tables  # noqa: E402  (README's rendered blocks: one marker pattern, the renderer's)


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


def _prose(name: str) -> str:
    """A document's own words, whitespace collapsed: README without its rendered blocks (test_benchmarks
    compares those with the results files), a notebook's markdown cells."""
    path = ROOT / name
    if path.suffix == ".ipynb":
        text = " ".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown")
    else:
        text = readme_tables.BLOCK.sub("", path.read_text())
    return " ".join(text.split())


def _results(name: str) -> str:
    return " ".join((ROOT / "results" / name).read_text().split())


def test_numbers_quoted_in_prose_come_from_the_results_files():
    """Every number README or notebook 03 quotes in its prose, read back from (or computed from) the
    committed results file it comes from: a rerun that changes one fails here until the prose follows."""
    readme, nb03 = _prose("README.md"), _prose("notebooks/03_glue_finetuning.ipynb")
    protocol, speed, sweep = _results("glue_protocol_cpu/results.md"), _results("speed_cpu/results.md"), _results("two_stage_sweep/results.md")
    paper4 = re.search(r"\| hadamard \|(?: [\d.]+ \|){6} ([\d.]+) \|", protocol).group(1)  # the paper's % of full, mean of 4
    control = dict(zip(["rte", "mrpc", "stsb", "cola", "sst2"], re.search(
        r"\| majority class \(control\) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", protocol).groups()))
    assert f"BERT-base row gives {paper4}%" in readme and f"BERT-base row gives {paper4}% there" in nb03
    assert f"SST-2 and STS-B (controls {control['sst2']} and {float(control['stsb']):.0f}," in nb03

    # speed: method ratios inside our trainer, and the trainer ratios as a range over the three methods
    method = re.search(r"Hadamard / full fine-tuning ([\d.]+)x; Hadamard / IA3 ([\d.]+)x; Hadamard / LoRA ([\d.]+)x", speed).groups()
    assert f"trains {method[0]}x as fast as full fine-tuning" in readme
    assert f"IA3 and LoRA ({method[1]}x, {method[2]}x)" in readme
    trainer = re.search(r"for Hadamard ([\d.]+)x \(with group_by_length ([\d.]+)x\); for IA3 ([\d.]+)x \(([\d.]+)x\); "
                        r"for LoRA ([\d.]+)x \(([\d.]+)x\)", speed).groups()
    plain, grouped = [float(x) for x in trainer[0::2]], [float(x) for x in trainer[1::2]]
    assert f"runs {min(plain):.1f}-{max(plain):.1f}x slower than ours" in readme
    assert f"it is {min(grouped):.2f}-{max(grouped):.2f}x slower" in readme
    rows = json.loads((ROOT / "results/speed_cpu/results.json").read_text())["rows"]
    spreads = [100 * (r["max"] - r["min"]) / r["median"] for r in rows if r["median"]]
    assert f"are {min(spreads):.1f}-{max(spreads):.1f}% of the median" in readme

    # bf16 quality on the GPU: RTE's two-stage adapter, its gap in points and in dev answers, its distance to the control
    scores = json.loads((ROOT / "results/precision_quality_gpu/results.json").read_text())["rows"]
    rte = {p: [100 * r["score"] for r in scores if (r["task"], r["method"], r["precision"]) == ("rte", "hadamard2", p)]
           for p in ("fp32", "bf16")}
    gap = sum(rte["fp32"]) / 3 - sum(rte["bf16"]) / 3
    worst = max(abs(s - float(control["rte"])) for s in rte["fp32"] + rte["bf16"])
    assert f"scored {gap:.1f} points lower in bf16 ({round(gap * 277 / 100)} of 277 dev answers)" in readme
    assert f"within {worst:.1f} points of the majority class ({control['rte']})" in readme

    # the early two-stage sweep (600 examples): rows are head lr | adapter lr | head in stage 2 | sst2 | mrpc | mean
    table = {tuple(r[:3]): r[3:] for r in re.findall(r"\| ([\d.]+) \| ([\d.]+) \| (yes|no) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|", sweep)}
    best, mean = table[("0.01", "0.01", "yes")], lambda key: table[key][2]
    others = ", ".join(mean(("0.01", lr, "yes")) for lr in ("0.001", "0.003", "0.03"))
    assert f"mean of SST-2 and MRPC {best[2]} vs {others})" in readme
    assert f"higher than freezing it ({best[2]} vs {mean(('0.01', '0.01', 'no'))})" in readme
    assert f"tied ({best[2]}, {mean(('0.001', '0.01', 'yes'))})" in readme
    assert f"scored {best[0]} against {table[('0.01', '0.01', 'no')][0]} frozen" in nb03
    mrpc = [float(r[1]) for r in table.values()]
    assert f"(MRPC moved by at most {max(mrpc) - min(mrpc):.1f} points)" in readme
    assert f"near its majority class (F1 {control['mrpc']})" in readme
