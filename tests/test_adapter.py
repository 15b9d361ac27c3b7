"""The adapter on every supported architecture, as tiny random models (no downloads)."""
import pytest
import torch
from torch import nn

import hadamard_lite as hl
from hadamard_lite.adapter import encoder_layers
from conftest import ARCH_TYPES, output_of, tiny_batch, tiny_model


def test_adapter_is_identity_and_broadcasts():
    adapter = hl.HadamardAdapter(8)
    x = torch.randn(2, 5, 8)
    assert torch.equal(adapter(x), x)
    with torch.no_grad():
        adapter.weight.fill_(2.0)
        adapter.bias.fill_(1.0)
    assert torch.equal(adapter(x), 2 * x + 1)
    assert [n for n, _ in adapter.named_parameters()] == ["weight", "bias"]


def _randomize_trained(model, seed=7):
    """Move adapters, post-attention LayerNorms and head away from their start values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in [p for p in model.parameters() if p.requires_grad]:
            p.add_(0.1 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("model_type", ARCH_TYPES)
@pytest.mark.parametrize("head", [True, False])
def test_identity_at_start(model_type, head):
    model = tiny_model(model_type, head=head)
    batch = tiny_batch()
    before = output_of(model, batch)
    hl.add_hadamard_adapter(model)
    assert (output_of(model, batch) - before).abs().max().item() == 0.0
    layers = encoder_layers(model)
    assert hl.adapted_layers(model) == list(range(len(layers)))


@pytest.mark.parametrize("model_type", ARCH_TYPES)
def test_training_changes_only_intended_parameters(model_type):
    model = tiny_model(model_type)
    hl.add_hadamard_adapter(model, layers=[0, -1] if len(encoder_layers(model)) > 1 else [0])
    batch = tiny_batch()
    labels = torch.tensor([0, 1, 2, 1])
    for stage in ["head", "adapter"]:
        hl.freeze_for_stage(model, stage)
        start = {n: p.detach().clone() for n, p in model.named_parameters()}
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        model.train()
        for _ in range(3):
            optimizer.zero_grad()
            model(**batch, labels=labels).loss.backward()
            optimizer.step()
        changed = {n for n, p in model.named_parameters() if not torch.equal(p, start[n])}
        assert changed == trainable, stage
        if stage == "head":
            assert trainable == set(hl.head_parameters(model))
        else:
            norms = hl.post_attention_layer_norms(model)
            expected = sum(a.weight.numel() * 2 for a in hl.hadamard_adapters(model).values())
            expected += sum(p.numel() for m in norms.values() for p in m.parameters())
            assert hl.count_parameters(model)[0] == expected
            assert all(".hadamard." in n or "norm" in n.lower() for n in trainable)


@pytest.mark.parametrize("parts", [("weight",), ("bias",), ("layernorm",), ("weight", "bias")])
def test_parts_train_only_what_they_name(parts):
    """The ablation of which parts matter: stage 2 narrowed to W, b or the LayerNorm."""
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter", train_head=True, parts=parts)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = set(hl.head_parameters(model))
    expected = {n for n, _ in model.named_parameters()
                if n in head or (n.endswith(".hadamard.weight") and "weight" in parts)
                or (n.endswith(".hadamard.bias") and "bias" in parts)
                or ("attention.output.LayerNorm" in n and "layernorm" in parts)}
    assert trainable == expected and trainable - head


@pytest.mark.parametrize("parts", [(), ("scale",), ("weight", "norm")])
def test_parts_reject_unknown_names(parts):
    model = hl.add_hadamard_adapter(tiny_model("bert"))
    with pytest.raises(ValueError, match="parts must be a non-empty subset"):
        hl.freeze_for_stage(model, "adapter", parts=parts)


@pytest.mark.parametrize("model_type", ARCH_TYPES)
def test_save_load_round_trip(model_type, tmp_path):
    model = tiny_model(model_type)
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter", train_head=True)
    _randomize_trained(model)
    batch = tiny_batch()
    expected = output_of(model, batch)
    hl.save_adapter(model, tmp_path / "adapter")
    torch.manual_seed(12345)
    torch.randn(1000)  # other random state between save and load
    fresh = tiny_model(model_type)  # same base weights, new random head
    assert not torch.equal(output_of(fresh, batch), expected)
    hl.load_adapter(fresh, tmp_path / "adapter")
    assert torch.equal(output_of(fresh, batch), expected)


@pytest.mark.parametrize("model_type", ARCH_TYPES)
def test_merge_and_unmerge(model_type):
    model = tiny_model(model_type)
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter")
    _randomize_trained(model)
    originals = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = tiny_batch()
    adapted = output_of(model, batch)
    hl.merge_adapter(model)
    assert not any(isinstance(m, hl.HadamardAdapter) for m in model.modules())
    assert (output_of(model, batch) - adapted).abs().max().item() < 1e-5
    hl.unmerge_adapter(model)
    now = dict(model.named_parameters())
    assert set(now) == set(originals)
    assert all(torch.equal(now[n], p) for n, p in originals.items())
    assert torch.equal(output_of(model, batch), adapted)


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "albert"])
def test_remove_restores_original_modules(model_type):
    model = tiny_model(model_type)
    before = {n: m for n, m in model.named_modules()}
    hl.add_hadamard_adapter(model)
    hl.merge_adapter(model)
    hl.remove_hadamard_adapter(model)
    after = {n: m for n, m in model.named_modules()}
    assert before.keys() == after.keys()
    assert all(before[n] is after[n] for n in before)


@pytest.mark.parametrize("model_type", ["bert", "distilbert"])
def test_remove_gives_back_the_base_model_layer_norms_included(model_type):
    """Stage 2 trains the post-attention LayerNorms in place: removal must put them back, or a
    second task's adapter would load on top of the first task's LayerNorms."""
    model = tiny_model(model_type)
    batch = tiny_batch()
    base = output_of(model, batch)
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter", train_head=False)  # the head is the task's own, not the adapter's
    _randomize_trained(model)
    assert not torch.allclose(output_of(model, batch), base)
    hl.remove_hadamard_adapter(model)
    assert torch.equal(output_of(model, batch), base)


def test_saved_adapter_files_get_the_mode_a_plain_file_would(tmp_path):
    import os
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model)
    hl.save_adapter(model, tmp_path / "adapter")
    (tmp_path / "plain.txt").write_text("x")
    plain = (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert {os.stat(f).st_mode & 0o777 for f in (tmp_path / "adapter").iterdir()} == {plain}  # not mkstemp's 0600


def test_unmerge_follows_a_dtype_change_made_while_merged():
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model)
    hl.merge_adapter(model)
    model.to(torch.float64)
    hl.unmerge_adapter(model)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    output_of(model, tiny_batch())  # used to fail: float64 activations into float32 adapters


def test_layers_selection_and_negative_indices():
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model, layers=[-1, 0])
    assert hl.adapted_layers(model) == [0, 2]


def test_albert_shares_one_adapter_across_passes():
    model = tiny_model("albert")  # 3 passes over one shared layer
    hl.add_hadamard_adapter(model)
    assert len(hl.hadamard_adapters(model)) == 1
    hl.freeze_for_stage(model, "adapter")
    assert hl.count_parameters(model)[0] == 4 * 32


def test_wrapped_modules_are_not_counted_twice():
    model = tiny_model("bert")
    _, total = hl.count_parameters(model)
    hl.add_hadamard_adapter(model)
    assert hl.count_parameters(model)[1] == total + 3 * 2 * 32


def test_print_trainable_parameters_matches_peft_format(capsys):
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter")
    hl.print_trainable_parameters(model)
    trainable, total = hl.count_parameters(model)
    assert capsys.readouterr().out == (
        f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}\n")
