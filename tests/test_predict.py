"""The predict command: many tasks' adapters on the bundled MiniLM, JSON lines in and out."""
import json

import pytest
import torch

import hadamard_lite as hl
from hadamard_lite.__main__ import main
from conftest import random_minilm_adapters

EXAMPLES = [
    {"task": "sst2", "text": "a gripping, beautifully acted film."},
    {"task": "stsb", "text": "A man plays a guitar.", "text_pair": "A man plays music."},
    {"task": "rte", "text": "It rained all day in Paris.", "text_pair": "Paris was dry."},
    {"task": "sst2", "text": "the plot never comes together, and the jokes fall flat for two long hours."},
    {"task": "stsb", "text": "Two dogs run.", "text_pair": "A cat sleeps on the sofa all afternoon."},
]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """Random adapters on different layer sets, saved; and each task's own model."""
    specs = [("sst2", None, 2), ("stsb", [1, 3, 5], 1), ("rte", [0, 1], 2)]
    return random_minilm_adapters(tmp_path_factory.mktemp("adapters"), specs, seed=5)


def _write(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def _args(folders):
    return [arg for name, folder in folders.items() for arg in ("--adapter", f"{name}={folder}")]


def test_predictions_in_input_order_match_each_tasks_model(adapters, tmp_path, capsys):
    folders, own = adapters
    examples = _write(tmp_path / "in.jsonl", EXAMPLES + [""])  # a trailing blank line is fine
    assert main(["predict", *_args(folders), "--input", str(examples), "--batch-size", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in lines] == [1, 2, 3, 4, 5]
    assert [r["task"] for r in lines] == [e["task"] for e in EXAMPLES]
    tokenizer = hl.load_tokenizer()
    for example, result in zip(EXAMPLES, lines):
        ids = tokenizer(example["text"], example.get("text_pair"), return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = own[example["task"]](input_ids=ids).logits[0]
        if example["task"] == "stsb":
            assert set(result) == {"line", "task", "score"}
            assert abs(result["score"] - logits.item()) < 1e-4
        else:
            names = {"sst2": ("negative", "positive"), "rte": ("entailment", "not_entailment")}[example["task"]]
            assert result["label"] == names[int(logits.argmax())]
    out = tmp_path / "out.jsonl"
    assert main(["predict", *_args(folders), "--input", str(examples), "--output", str(out)]) == 0
    assert [json.loads(line) for line in out.read_text().splitlines()] == lines
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("bad, message", [
    ({"task": "mnli", "text": "x"}, "line 3: unknown task 'mnli'"),
    ({"task": "sst2"}, "line 3: task 'sst2' needs a string 'text'"),
    ({"task": "sst2", "text": "x", "text_pair": "y"}, "line 3: task 'sst2' takes one sentence"),
    ({"task": "rte", "text": "x"}, "line 3: task 'rte' needs a string 'text_pair'"),
    ('{"task": "sst2", "text": ', "line 3: not valid JSON"),
    ('["sst2", "x"]', "line 3: expected a JSON object"),
])
def test_bad_lines_stop_before_any_output(adapters, tmp_path, capsys, bad, message):
    folders, _ = adapters
    examples = _write(tmp_path / "in.jsonl", EXAMPLES[:2] + [bad] + EXAMPLES[2:])
    out = tmp_path / "out.jsonl"
    out.write_text("earlier predictions\n")
    assert main(["predict", *_args(folders), "--input", str(examples), "--output", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("error: ") and message in captured.err
    assert out.read_text() == "earlier predictions\n"  # untouched


def test_bad_adapter_arguments(adapters, tmp_path, capsys):
    folders, _ = adapters
    examples = _write(tmp_path / "in.jsonl", EXAMPLES[:1])
    cases = [(["--adapter", "sst2"], "expected NAME=FOLDER"),
             (["--adapter", f"sst2={folders['sst2']}", "--adapter", f"sst2={folders['sst2']}"], "given twice"),
             (["--adapter", f"reviews={folders['sst2']}"], "cannot tell which GLUE task"),
             (["--adapter", f"sst2={folders['stsb']}"], "has 1 outputs, but GLUE task 'sst2' has 2"),
             (["--adapter", f"sst2={tmp_path / 'missing'}"], "no adapter config"),
             ([*_args(folders), "--output", str(tmp_path / "no" / "out.jsonl")], "does not exist")]
    for argv, message in cases:
        assert main(["predict", *argv, "--input", str(examples)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
