"""The benchmark scripts' own logic: the protocol's job order, rate choice and claims, and the
README tables that must match the committed results files."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import glue_protocol as gp  # noqa: E402
from hadamard_lite.data import SAMPLE_SOURCE  # noqa: E402


def test_every_final_run_comes_after_its_grid_and_main_methods_come_first():
    jobs = gp.jobs(gp.METHODS, gp.TASKS, seeds_all=1)
    names = [gp.job_name(j) for j in jobs]
    assert len(names) == len(set(names))
    for i, job in enumerate(jobs):
        if job["kind"] == "final":
            grid = [k for k, j in enumerate(jobs) if j["kind"] == "grid" and (j["task"], j["method"]) == (job["task"], job["method"])]
            assert len(grid) == len(gp.GRIDS[job["method"]]) and max(grid) < i
    first_other = next(i for i, j in enumerate(jobs) if j["method"] not in ("full", "hadamard2"))
    assert {j["method"] for j in jobs[:first_other]} == {"full", "hadamard2"}
    assert {j["seed"] for j in jobs[:first_other] if j["kind"] == "final"} == {0, 1, 2}  # the headline first
    after_floor = next(i for i, j in enumerate(jobs) if j["method"] not in ("full", "hadamard2", "head"))
    assert {j["method"] for j in jobs[first_other:after_floor]} == {"head"}  # then head only on every task
    assert {j["task"] for j in jobs[first_other:after_floor]} == set(gp.TASKS)
    # then BitFit, LayerNorm only and IA3 on the four headline tasks: the "above them" target needs only these
    after_baselines = next(i for i, j in enumerate(jobs) if j["method"] not in ("full", "hadamard2", "head", "bitfit",
                                                                              "layernorm", "ia3"))
    baselines = jobs[after_floor:after_baselines]
    assert {(j["task"], j["method"]) for j in baselines} == {(t, m) for t in gp.MEAN4 for m in ("bitfit", "layernorm", "ia3")}
    seeds = lambda m: sorted(j["seed"] for j in jobs if j["method"] == m and j["task"] == "rte" and j["kind"] == "final")
    assert seeds("full") == seeds("hadamard2") == seeds("hadamard1") == [0, 1, 2]
    assert seeds("bitfit") == [0]
    all3 = gp.jobs(gp.METHODS, gp.TASKS, seeds_all=3)
    assert all(sorted(j["seed"] for j in all3 if j["method"] == m and j["task"] == "cola" and j["kind"] == "final")
               == [0, 1, 2] for m in gp.METHODS)


def test_rate_is_chosen_on_held_out_scores_only_once_the_grid_is_complete():
    runs = {}
    for lr, score in zip(gp.GRIDS["full"], [0.6, 0.7, 0.7]):
        runs[gp.job_name({"task": "rte", "method": "full", "kind": "grid", "lr": lr})] = {"lr": lr, "score": score}
    assert gp.chosen_lr(runs, "rte", "full") == gp.GRIDS["full"][1]  # a tie goes to the smaller rate
    del runs[gp.job_name({"task": "rte", "method": "full", "kind": "grid", "lr": gp.GRIDS["full"][0]})]
    assert gp.chosen_lr(runs, "rte", "full") is None


def test_a_claim_holds_while_its_owner_lives_and_is_taken_over_after(tmp_path):
    job = {"task": "rte", "method": "full", "kind": "final", "seed": 0}
    assert gp.claim(tmp_path, gp.job_name(job))
    assert not gp.claim(tmp_path, gp.job_name(job))  # this process is alive
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "claims" / (gp.job_name(job) + ".claim")).write_text(dead.stdout.strip())
    assert gp.claim(tmp_path, gp.job_name(job))


def test_the_control_is_not_read_from_other_data_than_the_runs_trained_on(monkeypatch):
    # A --summarize without GLUE_DIR once scored the built-in sample and printed RTE's majority
    # class as 42.5 (it is 52.7): it must refuse instead.
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setattr("hadamard_lite.data.hub_available", lambda: False)
    runs = {"rte_full_final_seed0": {"task": "rte", "source": "GLUE TSV /data/glue_data/RTE/train.tsv"}}
    with pytest.raises(SystemExit, match="set GLUE_DIR"):
        gp.check_control_data(runs)
    gp.check_control_data({"rte_full_final_seed0": {"task": "rte", "source": SAMPLE_SOURCE}})  # same data: fine


def test_means_over_tasks_and_ratios_get_a_spread_only_from_seeds_that_pair_up():
    def cell(*scores, seeds=None):
        return {"scores": list(scores), "seeds": seeds or list(range(len(scores)))}
    full = {"rte": cell(60.0, 62.0), "mrpc": cell(80.0, 90.0)}
    assert gp.by_seed(full, ["rte", "mrpc"]) == {"0": 70.0, "1": 76.0}
    assert gp.by_seed({**full, "mrpc": cell(80.0)}, ["rte", "mrpc"]) == {}  # other seeds: no spread
    assert gp.ratio_cell({"0": 50.0, "1": 100.0}, {"0": 50.0, "1": 50.0}) == "66.7 ± 35.4"  # ratio of means, sd of ratios
    assert gp.ratio_cell({"all": 80.0}, {"all": 60.0}) == "75.0"
    assert gp.ratio_cell({"0": 53.0, "1": 60.0}, {"0": 52.0, "1": 58.0}, control=52.0) == "66.7"  # seed 0 gains 1: no sd
    assert gp.ratio_cell({"0": 53.0, "1": 53.5}, {"0": 52.0, "1": 58.0}, control=52.0) == "-"  # full gains 1.25 < 2
    assert gp.seed_ratios({"0": 50.0, "1": 100.0, "2": 90.0}, {"0": 50.0, "1": 50.0}) == {"0": 100.0, "1": 50.0}
    assert gp.seed_ratios({"0": 53.0, "1": 60.0}, {"0": 52.0, "1": 58.0}, control=52.0) == {}  # seed 0 gains 1


def test_targets_are_met_missed_or_undecided_from_the_numbers():
    def method(score, n, trainable=None):
        tasks = {t: {"scores": [score] * n, "seeds": list(range(n)), "trainable": trainable, "total": 10 ** 6}
                 for t in gp.MEAN4}
        for name, keys in (("mean4", gp.MEAN4), ("mean5", gp.MEAN4)):
            tasks[name], tasks[name + "_by_seed"] = score, gp.by_seed(tasks, keys)
        return tasks
    lines = gp.targets({"full": method(80.0, 3), "hadamard2": method(78.0, 3, trainable=400)})
    assert "one-stage" not in lines[0]  # not run: nothing to say
    with_one = gp.targets({"full": method(80.0, 3), "hadamard2": method(78.0, 3, trainable=400), "hadamard1": method(76.0, 3)})
    assert with_one[0].endswith("The one-stage variant (adapters, LayerNorms and head trained together, same rates grid): 95.0% ± 0.0.")
    assert "97.5% ± 0.0 over 3 seeds (each seed: 97.5, 97.5, 97.5): missed by 1.5 points" in lines[0]
    assert lines[1].endswith("0.0400%: met.") and "not decided yet" in lines[2]
    lines = gp.targets({"full": method(80.0, 3), "hadamard2": method(79.5, 2, trainable=600), "bitfit": method(70.0, 1),
                        "layernorm": method(81.0, 1), "ia3": method(60.0, 1)})
    assert "99.4% ± 0.0 over 2 seeds (each seed: 99.4, 99.4): not decided yet (met so far; fewer than 3 seeds for mrpc (adapter)" in lines[0]
    assert lines[1].endswith("missed.") and "missed: not above layernorm (the adapter minus each, in points: bitfit " \
        "+9.5, layernorm -1.5, ia3 +19.5); preliminary: fewer than 3 seeds for hadamard2, bitfit, layernorm, ia3" in lines[2]
    three = {m: method(70.0, 3) for m in ("bitfit", "layernorm", "ia3")}
    assert gp.targets({"full": method(80.0, 3), "hadamard2": method(79.5, 3, trainable=400), **three})[2].endswith(
        "met (the adapter minus each, in points: bitfit +9.5, layernorm +9.5, ia3 +9.5).")
    run = lambda precision, device="cpu", command="glue_protocol.py": {"precision": precision, "device": device,
                                                                        "command": command}
    assert "not decided by these runs" in gp.bf16_target({"a": run("fp32"), "b": run("bf16", "cuda")})[0]
    assert gp.bf16_target({"a": run("fp32"), "b": run("bf16")}) == []  # a CPU run in bf16: the runs could say more


def test_readme_result_tables_match_the_results_files():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "readme_tables.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_readme_tables_notice_a_changed_number(tmp_path, monkeypatch):
    import readme_tables
    readme = (ROOT / "README.md").read_text()
    blocks = readme_tables.BLOCK.findall(readme)
    if not blocks:
        pytest.skip("the README has no rendered result blocks yet")
    for _, other, *_ in blocks:  # every file the README renders, copied as it is
        (tmp_path / other).mkdir(parents=True, exist_ok=True)
        (tmp_path / other / "results.md").write_text((ROOT / other / "results.md").read_text())
    name = next(b[1] for b in blocks if not b[2])  # a block that renders its file's first table
    text = (ROOT / name / "results.md").read_text()
    changed = text.replace("|", "| 0.1 |", 1)  # one more cell in the first table
    (tmp_path / name / "results.md").write_text(changed)
    (tmp_path / "README.md").write_text(readme)
    monkeypatch.setattr(readme_tables, "ROOT", tmp_path)
    old, new = readme_tables.rendered_readme()
    assert old != new


def test_a_table_only_block_leaves_out_the_files_list(tmp_path, monkeypatch):
    import readme_tables
    (tmp_path / "results" / "x").mkdir(parents=True)
    (tmp_path / "results" / "x" / "results.md").write_text("| a |\n|---|\n| 1 |\n\n- a target line\n\n| b |\n|---|\n| 2 |\n")
    (tmp_path / "README.md").write_text("<!-- BEGIN results/x -->\n<!-- END results/x -->\n"
                                        "<!-- BEGIN results/x table=2 list=no -->\n<!-- END results/x -->\n")
    monkeypatch.setattr(readme_tables, "ROOT", tmp_path)
    _, new = readme_tables.rendered_readme()
    first, second = new.split("<!-- BEGIN results/x table=2 list=no -->")
    assert "| 1 |" in first and "- a target line" in first
    assert "| 2 |" in second and "- a target line" not in second and "| 1 |" not in second


def _tiny_model_env(folder: Path) -> dict:
    """The environment for a benchmark script to run on a tiny random BERT saved in ``folder``."""
    import os

    import torch
    from transformers import AutoConfig, AutoModel

    from hadamard_lite.models import load_tokenizer
    torch.manual_seed(0)  # a bare encoder, so that every task can put its own head on it (STS-B has 1 output)
    config = AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=37, vocab_size=30522)
    AutoModel.from_config(config).save_pretrained(folder)
    load_tokenizer().save_pretrained(folder)
    return {**os.environ, "HADAMARD_LITE_MODEL": str(folder)}


def test_speed_benchmark_writes_its_ratios_and_how_busy_the_machine_was(tmp_path):
    import json
    done = subprocess.run([sys.executable, "benchmarks/speed.py", "--out", str(tmp_path / "speed"), "--examples", "16",
                           "--max-length", "16", "--repeats", "2", "--threads", "1",
                           "--only", "hadamard1, our trainer", "full, our trainer"],
                          cwd=ROOT, env=_tiny_model_env(tmp_path / "tiny"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "speed" / "results.json").read_text())
    assert [len(r["runs"]) for r in result["rows"]] == [2, 2]  # the warm-up is not reported
    loads = result["meta"]["load_average_1min"]
    assert loads["start"] >= 0 and len(loads["after_each_round"]) == 3  # warm-up and two timed rounds
    text = (tmp_path / "speed" / "results.md").read_text()
    assert "1-minute load average at the start" in text and "Hadamard / full fine-tuning " in text


def test_patterns_study_runs_end_to_end_on_a_tiny_model(tmp_path):
    """The issue-9 study on a tiny random BERT and a few examples: the protocol's runs, then every
    kind of pattern run, then the analyses. Checks the plumbing (files, keys, tables), not results."""
    import json

    env = _tiny_model_env(tmp_path / "tiny")
    small = ["--limit", "24", "--tasks", "rte", "--threads", "1"]
    protocol_out, out = tmp_path / "protocol", tmp_path / "patterns"

    def run(*args):
        done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout
    run("benchmarks/glue_protocol.py", "--out", str(protocol_out), "--methods", "hadamard2", "head", "full", *small)
    assert (protocol_out / "models" / "rte_full_final_seed0" / "config.json").exists()
    assert list((protocol_out / "adapters").glob("rte_hadamard2_grid_lr*"))  # grid adapters are kept
    run("benchmarks/patterns.py", "--protocol", str(protocol_out), "--out", str(out),
        *small)
    names = {p.stem for p in (out / "runs").glob("*.json")}
    assert {"rte_parts_W_seed0", "rte_parts_LN_seed2", "rte_shuffled_labels_seed1", "rte_pruned_keep2_seed0",
            "all_shared_half_seed2"} <= names
    pruned = json.loads((out / "runs" / "rte_pruned_keep2_seed0.json").read_text())
    ranking = json.loads((out / "rankings" / "rte.json").read_text())
    assert pruned["layers"] == sorted(ranking["order"][:2]) and "held-out" in ranking["scored_on"]
    w_only = json.loads((out / "runs" / "rte_parts_W_seed0.json").read_text())
    assert w_only["parts"] == ["weight"] and w_only["stage2_params_without_head"] == 2 * 32  # W of 2 layers
    text = run("benchmarks/patterns.py", "--protocol", str(protocol_out), "--out", str(out), "--analyse", *small)
    # A ranking whose held-out drops are all equal is no ranking: the table must say so, and only then.
    assert (f"| rte | {ranking['order']} (all tied) |" in text) == (len(set(ranking["drops"].values())) == 1)
    result = json.loads((out / "results.json").read_text())
    sim = result["similarity"]["components"]["b"]
    assert sim["same task, other seed"]["all_layers"]["n"] == 3  # three seeds of RTE: three pairs
    assert sim["task vs its shuffled-label adapter"]["all_layers"]["n"] == 9
    assert result["parts"]["rte"]["W"]["n"] == 3 and result["pruning"]["rte"]["retrained top2"]["n"] == 3
    models = result["rq"]["rte"]["models"]  # every seed's fully fine-tuned model is kept and analysed
    assert [m["seed"] for m in models] == [0, 1, 2] and len(models[0]["layers"]) == 2 and "change" in models[0]["layers"][0]
    assert result["shared"]["all"]["adapter_params_all_tasks"] == 4 * 32 * 2  # 2 layers shared by all five tasks
    assert result["shared"]["none"]["scores"]["stsb"]["n"] == 3
    assert result["shared"]["none"]["recorded"] == 3 and "Collapse to one answer (every dev example of a task given the same class), among the 9 shared" in text
    assert "## 2. Which parts matter?" in text and "| rte |" in text
    assert "## Conclusions" in text and "rte" in result["learned"]
    assert any(line.startswith("**Which parts matter**") for line in result["conclusions"])
    # --render writes conclusions and tables anew from the saved measurements, without measuring again.
    (out / "results.json").write_text(json.dumps({**result, "conclusions": []}))
    analysed_md = (out / "results.md").read_text()
    (out / "results.md").write_text("stale")
    assert "## Conclusions" in run("benchmarks/patterns.py", "--out", str(out), "--render")
    rendered = json.loads((out / "results.json").read_text())
    assert rendered["conclusions"] == result["conclusions"] and rendered["parts"] == result["parts"]
    md = [line for line in (out / "results.md").read_text().splitlines()
          if not line.startswith("Conclusions and tables rendered")]
    assert "--render" in rendered["rendered_by"] and md == analysed_md.splitlines()
    # A model on disk is measured again only if its file changed: mark the stored numbers to tell which were.
    import os
    marked = json.loads((out / "results.json").read_text())
    for m in marked["rq"]["rte"]["models"]:
        m["dev_score"] = 12.0
    (out / "results.json").write_text(json.dumps(marked))
    weights = protocol_out / "models" / "rte_full_final_seed2" / "model.safetensors"
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))  # as if trained again
    run("benchmarks/patterns.py", "--protocol", str(protocol_out), "--out", str(out), "--analyse", *small)
    again = json.loads((out / "results.json").read_text())["rq"]["rte"]["models"]
    assert [(m["seed"], m["dev_score"] == 12.0, "reused" in m) for m in again] == [(0, True, False), (1, True, False),
                                                                                 (2, False, False)]
    assert again[2]["layers"] == models[2]["layers"]  # the same model file measured again: the same numbers
    # On a machine without the (git-ignored) fully fine-tuned models, the RQ numbers of the last analysis stay.
    import shutil
    shutil.rmtree(protocol_out / "models")
    run("benchmarks/patterns.py", "--protocol", str(protocol_out), "--out", str(out), "--analyse", *small)
    again = json.loads((out / "results.json").read_text())["rq"]["rte"]["models"]
    assert [m["seed"] for m in again] == [0, 1, 2] and all(m["reused"] for m in again)
    assert again[0]["layers"] == models[0]["layers"]
    # ... but not those of an analysis with other settings (not comparable) ...
    run("benchmarks/patterns.py", "--protocol", str(protocol_out), "--out", str(out), "--analyse", *small,
        "--rq-tokens", "7")
    assert json.loads((out / "results.json").read_text())["rq"] == {}
    # ... and an analysis from before several seeds (one model, its numbers at the top level) is read as seed 0.
    old = {"rq": {"rte": {"metric": "accuracy", "majority": 0.5, "dev_score": 0.6, "learned": True,
                          "layers": models[0]["layers"]}}}
    (out / "results.json").write_text(json.dumps(old))
    run("benchmarks/patterns.py", "--protocol", str(protocol_out), "--out", str(out), "--analyse", *small)
    again = json.loads((out / "results.json").read_text())["rq"]["rte"]["models"]
    assert [(m["seed"], m["reused"], m["dev_score"]) for m in again] == [(0, True, 0.6)]


def _spread(*values):
    import statistics
    return {"n": len(values), "mean": statistics.mean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def _study(other_cos, noise_cos, parts):
    """A made-up analysis result: SST-2 and STS-B learned, RTE did not (its pairs must be ignored)."""
    learned = {t: {"hadamard2": _spread(0.80, 0.81, 0.82), "full": _spread(0.85), "majority": 0.5, "learned": True}
               for t in ("sst2", "stsb")}
    learned["rte"] = {"hadamard2": _spread(0.52, 0.53, 0.52), "full": _spread(0.53), "majority": 0.527, "learned": False}
    pairs = [{"a": "sst2_seed0", "b": "sst2_seed1", "group": "same task, other seed", "cos": 0.8},
             {"a": "stsb_seed0", "b": "stsb_seed1", "group": "same task, other seed", "cos": 0.7},
             {"a": "sst2_seed0", "b": "stsb_seed0", "group": "other task", "cos": other_cos},
             {"a": "sst2_seed1", "b": "stsb_seed1", "group": "other task", "cos": other_cos + 0.01},
             {"a": "sst2_seed0", "b": "rte_seed0", "group": "other task", "cos": 0.99},  # RTE learned nothing
             {"a": "sst2_seed0", "b": "stsb_seed0", "group": "shuffled labels, other task", "cos": noise_cos},
             {"a": "sst2_seed1", "b": "stsb_seed1", "group": "shuffled labels, other task", "cos": noise_cos + 0.01},
             {"a": "sst2_seed0", "b": "rte_seed0", "group": "shuffled labels, other task", "cos": 0.99}]
    component = {"pairs": pairs, "random vectors": {"all_layers": _spread(0.0, 0.01, -0.01, 0.0)}}
    return {"learned": learned, "similarity": {"components": {k: component for k in patterns.COMPONENTS}},
            "parts": {t: parts for t in ("sst2", "stsb")}, "pruning": {}, "shared": {}, "rq": {}}


def _parts(w, b, ln, sd=0.002):
    return {"W": _spread(w - sd, w + sd), "b": _spread(b - sd, b + sd), "LN": _spread(ln - sd, ln + sd),
            "Wb": _spread(b), "all (protocol hadamard2)": _spread(0.81), "head only (protocol)": _spread(0.6)}


import patterns  # noqa: E402


def test_pattern_verdicts_follow_the_numbers_and_their_controls():
    """conclusions() turns the study's numbers into the sentences notebook 05 and the README print:
    each verdict must flip when the numbers do, and tasks that did not learn must not count."""
    def line(result, topic):
        return next(x for x in patterns.conclusions(result) if x.startswith(f"**{topic}"))
    shared = line(_study(0.5, 0.1, _parts(0.7, 0.8, 0.8)), "Shared patterns (W - 1)")
    assert "alike beyond both controls" in shared and "between tasks 0.5" in shared and "0.99" not in shared
    # two seeds of each task, for the same-task pairs and for the shuffled-label control alike: not final yet
    assert "preliminary (2 same-task pairs of seeds and 2 shuffled-label seeds per task so far)" in shared
    low, high = map(float, shared.split("Cosine of all layers joined")[1].split("between tasks")[1].split("95% interval over seeds ")[1].split(";")[0].split(" to "))
    assert low <= 0.505 <= high  # the interval holds the mean of the two pairs (0.50, 0.51)
    one_seed_each = [{"a": "sst2_seed0", "b": "stsb_seed0", "cos": 0.5}, {"a": "sst2_seed0", "b": "cola_seed0", "cos": 0.6}]
    assert patterns._interval(one_seed_each, same_task=False) is None  # every draw the same: no interval to give
    # one task with two seeds, the other with one: an interval would hide the second task's seed noise
    uneven = one_seed_each + [{"a": "sst2_seed1", "b": "stsb_seed0", "cos": 0.4}, {"a": "sst2_seed1", "b": "cola_seed0", "cos": 0.3}]
    assert patterns._interval(uneven, same_task=False) is None
    assert "may come from training itself" in line(_study(0.5, 0.5, _parts(0.7, 0.8, 0.8)), "Shared patterns (b)")
    # A shuffled-label control with one seed of a task has no interval; its pairs share adapters, so the band is
    # 2 sd of its pairs (a standard error over pairs would be too narrow and call 0.30 "beyond" it here).
    uneven = _study(0.3, 0.0, _parts(0.7, 0.8, 0.8))
    for component in uneven["similarity"]["components"].values():
        component["pairs"] = [p for p in component["pairs"] if p["group"] != "shuffled labels, other task"] + [
            {"a": "sst2_seed0", "b": "stsb_seed0", "group": "shuffled labels, other task", "cos": -0.05},
            {"a": "sst2_seed1", "b": "stsb_seed0", "group": "shuffled labels, other task", "cos": 0.15}]
    assert "not clearly more alike than shuffled-label" in line(uneven, "Shared patterns (b)")
    # between tasks below the shuffled-label pairs' mean: said as "no more alike (less)", with both means
    below = _study(0.3, 0.35, _parts(0.7, 0.8, 0.8))
    assert "no more alike than shuffled-label adapters of different tasks (less, by the means: 0.30 against 0.35)" \
        in line(below, "Shared patterns (b)")
    assert "no shared pattern" in line(_study(0.0, 0.1, _parts(0.7, 0.8, 0.8)), "Shared patterns (b)")
    assert "did not beat the majority class" in line(_study(0.5, 0.1, _parts(0.7, 0.8, 0.8)), "Which tasks learned")
    assert "confirmed:" in line(_study(0.5, 0.1, _parts(0.7, 0.8, 0.8)), "Which parts matter")
    assert "refuted:" in line(_study(0.5, 0.1, _parts(0.8, 0.7, 0.7)), "Which parts matter")
    # the same means with seeds that disagree by far more than the differences: no verdict either way
    assert "not confirmed on every task:" in line(_study(0.5, 0.1, _parts(0.7, 0.8, 0.8, sd=0.2)), "Which parts matter")
    # ... and the line names what is not shown where: here b beats head only but not W (by half a point)
    # (head only has one seed here: the line must not claim a measured noise; with two seeds it may)
    close = _parts(0.7, 0.705, 0.8)
    assert "not confirmed on every task: beyond the noise (2 sd where a group has seeds, at least " \
           "1 point; a one-seed group has no spread), the parts separate this way on no task; not shown " \
           "on sst2: b above W; stsb: b above W." in line(_study(0.5, 0.1, close), "Which parts matter")
    # the paper's two parts, each on its own: the LayerNorm passes both tests on both tasks, b on none
    assert ("Claim by claim: the LayerNorm alone passes both tests (above head only and above W alone) on 2 of 2 tasks "
            "(sst2, stsb); b alone passes both tests (above head only and above W alone) on 0 of 2 tasks.") in line(_study(0.5, 0.1, close), "Which parts matter")
    close["head only (protocol)"] = _spread(0.6, 0.61)
    assert "beyond the noise, the parts separate this way on no task;" in line(_study(0.5, 0.1, close), "Which parts matter")
    assert "not measured yet" in line(_study(0.5, 0.1, _parts(0.7, 0.8, 0.8)), "RQ2")


def test_pattern_lines_name_uneven_seeds_the_best_part_and_noisy_losses():
    """What review found a reader misread: the fewest shuffled seeds said as if every task had that many; a parts
    verdict that held on one task read as holding on none; a large loss inside wide seed noise read as no loss."""
    def line(result, topic):
        return next(x for x in patterns.conclusions(result) if x.startswith(f"**{topic}"))
    uneven = _study(0.5, 0.1, _parts(0.7, 0.8, 0.8))
    for component in uneven["similarity"]["components"].values():
        component["pairs"].append({"a": "sst2_seed2", "b": "stsb_seed0", "group": "shuffled labels, other task", "cos": 0.1})
    assert "preliminary (2 same-task pairs of seeds and shuffled-label seeds per task: sst2 3, stsb 2 so far)" in \
        line(uneven, "Shared patterns (W - 1)")
    result = _study(0.5, 0.1, _parts(0.7, 0.8, 0.85))
    result["parts"]["stsb"] = _parts(0.7, 0.705, 0.78)  # b not above W here; all three (0.81) clearly ahead
    parts = line(result, "Which parts matter")
    assert "the parts separate this way on sst2; not shown on stsb: b above W." in parts
    assert "Best single part by mean: sst2 LayerNorm, stsb LayerNorm; all three beats it beyond the noise on stsb" in parts
    result["shared"] = {"none": {"adapter_params_all_tasks": 30, "scores": {"sst2": _spread(0.80, 0.81), "stsb": _spread(0.80, 0.80)}},
                        "all": {"adapter_params_all_tasks": 10, "scores": {"sst2": _spread(0.50, 0.90), "stsb": _spread(0.70, 0.70)}}}
    shared = line(result, "Shared adapters")
    assert "worse beyond the noise on stsb; a loss of more than 1 point that the seeds' spread does not separate from noise on sst2 (sd up to 28.3)" in shared


def test_pruning_and_rq_verdicts_name_the_right_tasks_and_maps():
    def line(result, topic):
        return next(x for x in patterns.conclusions(result) if x.startswith(f"**{topic}"))
    result = _study(0.5, 0.1, _parts(0.7, 0.8, 0.8))
    row = lambda full, kept: {"ranking": [0, 1, 2, 3, 4, 5], "post-hoc all": _spread(full, full + 0.004, full - 0.004),
                              "post-hoc top4": _spread(0.78, 0.79, 0.8), "post-hoc bottom4": _spread(0.6, 0.61, 0.62),
                              "retrained top4": _spread(kept, kept + 0.004, kept - 0.004)}
    result["pruning"] = {"sst2": row(0.80, 0.795), "stsb": row(0.80, 0.70),
                         "rte": row(0.53, 0.40)}  # RTE did not learn: never named
    pruning = line(result, "Redundant layers")
    assert "costs more than the noise on stsb (" in pruning and "rte" not in pruning.split("Dev x100")[0]
    assert "beats its control" in pruning and "on 2 of 2 tasks (sst2, stsb)" in pruning
    assert "share 4.00 layers, against 2.67" in pruning and "no more than chance" not in pruning
    assert "learned little" not in pruning and "Keeping 2 of 6" not in pruning  # no 2-of-6 runs: no 2-of-6 verdict
    for r, kept2 in zip(result["pruning"].values(), (0.795, 0.75, 0.40)):
        r["retrained top2"] = _spread(kept2, kept2 + 0.004, kept2 - 0.004)
        r["post-hoc top2"], r["post-hoc bottom2"] = _spread(0.7, 0.71), _spread(0.7, 0.69)
    pruning = line(result, "Redundant layers")
    assert "Keeping 2 of 6 layers (retrained) costs more than the noise on stsb (loss sst2 +0.5, stsb +5.0 points)." in pruning
    assert "keeping the top 2 rather than the bottom 2, on 0 of 2." in pruning and "top 2 70.5 ± 0.7 (n=2)" in pruning
    for r in result["pruning"].values():  # better with 2 layers than with 6: a gain, not a loss beyond the noise
        r["retrained top2"] = _spread(0.85, 0.851)
    assert "Keeping 2 of 6 layers (retrained) loses nothing beyond the noise on any task (loss sst2 -5.0" in \
        line(result, "Redundant layers")
    result["pruning"]["sst2"]["retrained top2"] = _spread(0.505, 0.51)  # at the majority class (0.5): flagged
    assert "On sst2 (lowest seed 50.5, majority class 50.0) a retrained top-2 adapter did not beat the majority class" \
        in line(result, "Redundant layers")
    result["pruning"]["stsb"] = row(0.80, 0.505)  # a retrained run at the majority class (0.5): flagged
    assert "On stsb (lowest seed 50.1, majority class 50.0) a retrained top-4 adapter did not beat the majority class" \
        in line(result, "Redundant layers")
    del result["pruning"]["stsb"]["retrained top4"]  # a task not retrained yet is not counted either way
    assert "no loss detected" in line(result, "Redundant layers")

    fit = {"identity": 0.9, "elementwise": 0.95, "quadratic": 0.951, "linear": 0.96, "norm_before": 1.0, "norm_after": 1.2,
           "relative_change": 0.3, "linear_params": 10, "fit_tokens": 5, "test_tokens": 5,
           "change": {"identity": -1.0, "elementwise": 0.01, "quadratic": 0.01, "linear": 0.4}}
    model = lambda seed, score, learned, f=fit: {"seed": seed, "layers": [f], "learned": learned, "dev_score": score}
    result["rq"] = {"sst2": {"models": [model(0, 0.85, True), model(1, 0.84, True)], "majority": 0.5},
                    "rte": {"models": [model(0, 0.53, False)], "majority": 0.527}}
    rq2 = line(result, "RQ2")
    assert "on the fine-tuned outputs, it suffices" in rq2 and "on the change (after − before, where the identity scores at most 0), it does not suffice" in rq2
    assert "rte seed 0" in line(result, "Fully fine-tuned models left out") and "rte" not in line(result, "RQ1")
    rq1 = line(result, "RQ1")
    assert "confirmed: the norm grows by more than 1% on every seed in every layer of every task" in rq1
    assert "preliminary (fewer than 3 seeds that learned for sst2)" in rq1 and "sst2 2" in rq1
    # One seed where the norm shrinks: the layer no longer counts as grown, and RQ2 must hold on every seed too.
    shrunk = {**fit, "norm_after": 0.9, "elementwise": 0.9}
    result["rq"]["sst2"]["models"].append(model(2, 0.85, True, shrunk))
    assert "not in every layer: the norm grows by more than 1% on every seed in 0 of 1 (task, layer) pairs, not in sst2 layer 0" \
        in line(result, "RQ1")
    assert "preliminary" not in line(result, "RQ1")  # three seeds that learned
    assert "on the fine-tuned outputs, it does not suffice" in line(result, "RQ2")
    # Models this machine no longer has: named one by one when some are reused, in one phrase when all are.
    result["rq"]["sst2"]["models"][1]["reused"] = True
    assert "; sst2 seed 1: numbers of an earlier analysis with the same settings, kept because" in line(result, "RQ1")
    for m in result["rq"]["sst2"]["models"]:
        m["reused"] = True
    assert "all 3 models: numbers of an earlier analysis with the same settings, kept because" in line(result, "RQ1")
    result["rq"] = {"rte": {"models": [model(0, 0.53, False)], "majority": 0.527}}
    assert "no fully fine-tuned model that learned yet" in line(result, "RQ1")


def test_shared_adapter_verdict_names_the_variant_and_the_tasks_that_lost():
    def line(result):
        return next(x for x in patterns.conclusions(result) if x.startswith("**Shared adapters"))
    result = _study(0.5, 0.1, _parts(0.7, 0.8, 0.8))
    variant = lambda sst2, stsb, params: {"adapter_params_all_tasks": params, "scores": {
        "sst2": _spread(sst2, sst2 + 0.004, sst2 - 0.004), "stsb": _spread(stsb, stsb + 0.004, stsb - 0.004),
        "rte": _spread(0.4, 0.41, 0.42)}}  # RTE did not learn: never named
    result["shared"] = {"none": variant(0.80, 0.80, 300), "half": variant(0.80, 0.75, 200), "all": variant(0.795, 0.795, 100)}
    text = line(result)
    assert text.startswith("**Shared adapters** (paper: patterns shared across tasks point to adapters shared between "
                           "tasks), on sst2, stsb: ") and "rte" not in text and "preliminary" not in text
    assert "sharing the lower half of the layers (200 adapter parameters for five tasks, against 300) changes the dev " \
           "score by sst2 +0.0, stsb -5.0 points: worse beyond the noise on stsb;" in text
    assert "sharing every layer (100 adapter parameters" in text and "sst2 -0.5, stsb -0.5 points: no loss beyond the noise" in text
    one_seed = {**result["shared"]["half"]["scores"]["stsb"], "n": 1, "sd": 0.0}  # no spread measured: not "the noise"
    result["shared"]["half"]["scores"]["stsb"] = one_seed
    assert "worse beyond the noise (2 sd where a group has seeds" in line(result)
    result["shared"]["none"]["scores"]["stsb"] = _spread(0.5)  # no better than its majority class: left out
    assert ", on sst2: preliminary (1 seed" not in line(result) and ", on sst2: sharing" in line(result)
    result["shared"] = {}
    assert "not measured yet" in line(result)


def test_a_verdict_on_one_seed_says_it_is_preliminary():
    one = {k: ({**v, "sd": 0.0, "n": 1} if isinstance(v, dict) else v) for k, v in _parts(0.7, 0.8, 0.8).items()}
    text = next(x for x in patterns.conclusions(_study(0.5, 0.1, one)) if x.startswith("**Which parts matter"))
    assert "preliminary (1 seed in some group): confirmed" in text


def test_the_study_runs_a_task_that_did_not_learn_last(monkeypatch):
    monkeypatch.setattr(patterns.protocol, "majority_baseline", lambda task: 0.5)
    runs = {"rte_hadamard2_final_seed0": {"score": 0.505}, "mrpc_hadamard2_final_seed0": {"score": 0.8}}
    assert patterns.did_not_learn(runs, "rte") and not patterns.did_not_learn(runs, "mrpc")
    assert not patterns.did_not_learn(runs, "stsb")  # not known yet: keeps its place


def test_minutes_per_run_are_medians_and_ranges_of_the_run_files():
    run = lambda task, method, seconds: {"task": task, "method": method, "seconds": seconds, "threads": 1}
    runs = {"a": run("rte", "full", 600), "b": run("rte", "full", 720), "c": run("rte", "full", 3600),
            "d": run("mrpc", "head", 300)}
    line = gp.minutes(runs)
    assert "full: rte 12 (10-60)" in line and "head: mrpc 5." in line
    assert "1 thread" not in line and "header" in line  # the header counts threads, once


def test_nbval_repeat_records_every_run_and_stops_at_a_failure(tmp_path):
    """The five-in-a-row evidence for notebooks 05 and 06 comes from this script: a passing notebook gets
    one row per run; a failing one stops the series at once, and the file says it failed."""
    import nbformat
    for name, code in [("good", "print(1 + 1)"), ("bad", "assert 1 + 1 == 3, 'arithmetic'")]:
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
        nbformat.write(nb, tmp_path / f"{name}.ipynb")

    def series(name, times):
        done = subprocess.run([sys.executable, "benchmarks/nbval_repeat.py", str(tmp_path / f"{name}.ipynb"),
                               "--times", str(times), "--out", str(tmp_path / name)],
                              cwd=ROOT, capture_output=True, text=True, timeout=600)
        return done.returncode, (tmp_path / name / "results.md").read_text()

    code, text = series("good", 2)
    assert code == 0 and "**2 of 2 runs passed in a row.**" in text
    assert "| 1 | 1 passed |" in text and "| 2 | 1 passed |" in text
    code, text = series("bad", 3)
    assert code == 1 and "**stopped: run 1 failed.**" in text and "| 1 | 1 failed |" in text and "| 2 |" not in text
