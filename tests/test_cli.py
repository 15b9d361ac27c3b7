"""The command line: every bad input is one line on stderr and exit status 2, never a traceback;
an interrupted run resumes to the same adapter and score; the result line names what it is."""
import json
import re
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hadamard_lite.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bad(tmp_path):
    """Broken inputs: data files, run folders and an output path that is a file."""
    def write(relative, content):
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    write("binary/SST-2/train.tsv", b"\x89PNG\r\n\x1a\n\x00\xff\xfe binary")
    write("header_only/STS-B/train.tsv", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n")
    write("empty/SST-2/train.tsv", "")
    write("columns/RTE/train.tsv", "index\tsentence1\tsentence2\tlabel\n0\tP .\tH .\tentailment\n1\tonly two\n")
    write("labels/SST-2/train.tsv", "sentence\tlabel\ngood\t1\nbad\t7\n")
    write("no_dev/SST-2/train.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n")
    write("corrupt_summary/run_summary.json", "{ not json")
    write("partial_summary/run_summary.json", json.dumps({"task": "sst2"}))
    write("corrupt_adapter/run_summary.json", json.dumps(
        {"task": "sst2", "metric": "accuracy", "score": 0.5, "model": None, "data_dir": None, "source_option": "sample",
         "eval_limit": None, "seed": 0, "max_length": 128}))
    write("corrupt_adapter/adapter_config.json", "[1, 2")
    write("a_file", "not a folder")
    return tmp_path


BAD_INPUTS = [  # (arguments, with {tmp} for the fixture's folder; what the one line must say)
    ("train --epochs 0", r"--epochs 0 .*at least 1"),
    ("train --head-epochs -1", r"--head-epochs -1"),
    ("train --batch-size 0", r"--batch-size 0 .*at least 1"),
    ("train --max-length 0", r"--max-length 0 .*at least 2"),
    ("train --max-length 100000", r"--max-length 100000 is longer than this model reads; give at most 512"),
    ("train --lr 0", r"--lr 0.0 .*above 0"),
    ("train --lr nan", r"--lr nan .*finite"),
    ("train --head-lr inf", r"--head-lr inf .*finite"),
    ("train --lr=-3e-3", r"--lr -0.003"),
    ("train --limit -1", r"--limit -1"),
    ("train --eval-limit -5", r"--eval-limit -5"),
    ("train --layers 6", r"--layers 6: layer index 6 is out of range.*6 layers"),
    ("train --layers 0 -6", r"name the same layer twice"),
    ("train --task sst3", r"invalid choice: 'sst3'"),
    ("train --epochs three", r"invalid int value: 'three'"),
    ("train --no-such-option", r"unrecognized arguments: --no-such-option"),
    ("frobnicate", r"invalid choice: 'frobnicate'"),
    ("train --device gpu", r"unknown device 'gpu'"),
    ("train --device cuda:7", r"cuda:7"),
    ("train --precision fp16 --device cpu", r"fp16 needs a CUDA GPU"),
    ("train --model {tmp}/no_model_here", r"no folder with a config.json"),
    ("train --data-dir {tmp}/nowhere", r"--data-dir .*nowhere is not a folder"),
    ("train --data-dir {tmp}/binary --task sst2", r"SST-2/train.tsv, line 1: not UTF-8"),
    ("train --data-dir {tmp}/header_only --task stsb", r"STS-B/train.tsv has no examples \(only a header\)"),
    ("train --data-dir {tmp}/empty --task sst2", r"SST-2/train.tsv is empty"),
    ("train --data-dir {tmp}/columns --task rte", r"RTE/train.tsv, line 3: expected 4 tab-separated fields.*got 2"),
    ("train --data-dir {tmp}/labels --task sst2", r"SST-2/train.tsv, line 3: label '7' is out of range"),
    ("train --data-dir {tmp}/no_dev --task sst2", r"split 'dev' not found: looked for .*SST-2/dev.tsv"),
    ("train --data-dir {tmp}/no_dev --task cola", r"'cola' split 'train' not found"),
    ("train --output {tmp}/a_file", r"--output .*a_file is a file"),
    ("train --output {tmp}/fresh --resume", r"--resume: no checkpoint in .*fresh/checkpoints"),
    ("evaluate {tmp}/nowhere", r"no run_summary.json in .*nowhere"),
    ("evaluate {tmp}/corrupt_summary", r"run_summary.json is not valid JSON"),
    ("evaluate {tmp}/partial_summary", r"run_summary.json lacks \['metric'"),
    ("evaluate {tmp}/corrupt_adapter", r"adapter_config.json is not valid JSON"),
    ("demo --model {tmp}/no_model_here", r"no folder with a config.json"),
]


@pytest.mark.parametrize("arguments,message", BAD_INPUTS, ids=[a for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_status_2(bad, capsys, arguments, message):
    assert len(BAD_INPUTS) >= 20
    status = main(arguments.format(tmp=bad).split())
    out, err = capsys.readouterr()
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(message, lines[0]), lines[0]
    assert "Traceback" not in out + err


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(Exception, match="--epochs 0"):
        main(["train", "--epochs", "0", "--debug"])


@pytest.mark.parametrize("arguments", ["train --batch-size 0", "train --data-dir {tmp}/binary --task sst2"])
def test_a_real_process_prints_one_line_and_no_traceback(bad, arguments):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "hadamard_lite", *arguments.format(tmp=bad).split()],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stdout + result.stderr


# ---------------------------------------------------------------------- runs on a tiny model

def tiny_run(model_dir, out, *extra):
    """Arguments of a run on the built-in sample that takes seconds (4 batches an epoch, 3 + 3 epochs)."""
    return ["train", "--model", str(model_dir), "--source", "sample", "--limit", "32", "--eval-limit", "24",
            "--batch-size", "8", "--max-length", "32", "--head-epochs", "3", "--epochs", "3",
            "--device", "cpu", "--precision", "fp32", "--output", str(out), *extra]  # exact on every machine


def outcome(out):
    summary = json.loads((out / "run_summary.json").read_text())
    return summary["score"], load_file(out / "adapter_model.safetensors")


def test_result_line_names_the_built_in_sample_and_evaluate_reproduces(tiny_model_dir, tmp_path, capsys):
    status = main(tiny_run(tiny_model_dir, tmp_path / "run"))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert status == (1 if summary["collapsed"] else 0)  # a collapsed run is not passed off as a result
    assert line.startswith("sst2 | accuracy ") and "data: built-in sample, NOT GLUE" in line
    assert ("COLLAPSED" in line) == bool(summary["collapsed"])
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "run_summary.json"]  # checkpoints removed when done
    assert main(["evaluate", str(tmp_path / "run")]) == 0
    assert "(reproduced)" in capsys.readouterr().out


def test_a_model_chosen_by_the_environment_is_recorded_and_evaluated(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HADAMARD_LITE_MODEL", str(tiny_model_dir))
    arguments = tiny_run(tiny_model_dir, tmp_path / "run")
    del arguments[1:3]  # no --model: the variable chooses it
    main(arguments)
    summary = json.loads((tmp_path / "run" / "run_summary.json").read_text())
    assert summary["model"] == str(tiny_model_dir) and summary["precision"] == "fp32"
    monkeypatch.delenv("HADAMARD_LITE_MODEL")  # evaluate reads the model from the summary, not the variable
    capsys.readouterr()
    assert main(["evaluate", str(tmp_path / "run")]) == 0 and "(reproduced)" in capsys.readouterr().out


def test_a_collapsed_run_is_reported_not_passed_off(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from hadamard_lite.trainer import Trainer
    monkeypatch.setattr(Trainer, "predict", lambda self, data: [1] * len(data))  # a constant guess
    status = main(tiny_run(tiny_model_dir, tmp_path / "run"))
    out, err = capsys.readouterr()
    assert status == 1
    assert "| COLLAPSED to a constant prediction: not a result" in out.strip().splitlines()[-1]
    assert "warning: stage 2 (adapters): training collapsed to a constant prediction" in err
    assert "every dev example gets the label 'positive'" in err
    assert "Traceback" not in out + err


# The command line, with one change: after writing a checkpoint of the stage named in KILL_STAGE,
# the process waits, so the test's signal always lands mid-run however busy the machine is.
PAUSING_CLI = """
import os, signal, sys, time
# Ctrl-C as in a terminal, even when this test runs as a background job (which inherits SIGINT ignored).
signal.signal(signal.SIGINT, signal.default_int_handler)
from hadamard_lite.trainer import Trainer
save = Trainer.save_checkpoint
def save_then_wait(self, path):
    save(self, path)
    if os.sep + os.environ["KILL_STAGE"] + os.sep in str(path):
        time.sleep(120)
Trainer.save_checkpoint = save_then_wait
from hadamard_lite.__main__ import main
sys.exit(main(sys.argv[1:]))
"""


def run_until_checkpoint(arguments, checkpoint: Path, sig):
    """Start a real training process, and send ``sig`` once ``checkpoint`` appears (the process
    waits there, so the signal interrupts the run after its first epoch of that stage)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "KILL_STAGE": checkpoint.parent.name}
    process = subprocess.Popen([sys.executable, "-c", PAUSING_CLI, *arguments], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not checkpoint.is_file():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.time() < deadline
        time.sleep(0.02)
    process.send_signal(sig)
    out, err = process.communicate(timeout=120)
    return process.returncode, err


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_dir, tmp_path_factory):
    whole = tmp_path_factory.mktemp("whole")
    main(tiny_run(tiny_model_dir, whole))
    return whole


@pytest.mark.parametrize("stage,sig", [("head", signal.SIGINT), ("adapter", signal.SIGKILL)])
def test_resume_after_a_killed_run_equals_an_uninterrupted_one(tiny_model_dir, uninterrupted, tmp_path, capsys, stage, sig):
    whole = uninterrupted
    cut = tmp_path / "cut"
    status, err = run_until_checkpoint(tiny_run(tiny_model_dir, cut), cut / "checkpoints" / stage / "checkpoint.pt", sig)
    assert not (cut / "run_summary.json").exists()  # the signal stopped the run before its end
    if sig == signal.SIGINT:
        assert status == 130 and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("error: interrupted; the same command with --resume continues")
    else:
        assert status == -signal.SIGKILL
    capsys.readouterr()
    main(tiny_run(tiny_model_dir, cut, "--resume"))
    resumed = json.loads((cut / "run_summary.json").read_text())["resumed_after_epoch"]
    # It continued after the first epoch of the stage it was killed in, not from scratch or the end.
    assert resumed[stage] == 1 and (stage == "head" or resumed["head"] == 3)
    score, adapter = outcome(cut)
    whole_score, whole_adapter = outcome(whole)
    assert score == whole_score
    assert adapter.keys() == whole_adapter.keys()
    assert all(torch.equal(adapter[n], whole_adapter[n]) for n in adapter)
    # The adapter saved is the best epoch's, so compare every epoch too: losses and dev scores.
    history = json.loads((cut / "run_summary.json").read_text())["history"]
    assert [r["epoch"] for r in history["head"]] == [1, 2, 3] and [r["epoch"] for r in history["adapter"]] == [1, 2, 3]
    assert history == json.loads((whole / "run_summary.json").read_text())["history"]


def test_resume_with_other_settings_is_refused(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    checkpoint = out / "checkpoints" / "head" / "checkpoint.pt"
    run_until_checkpoint(tiny_run(tiny_model_dir, out), checkpoint, signal.SIGKILL)
    capsys.readouterr()
    assert main(tiny_run(tiny_model_dir, out, "--resume", "--head-lr", "0.5")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: checkpoint ") and "lr=0.01 there, 0.5 here" in err[-1]
