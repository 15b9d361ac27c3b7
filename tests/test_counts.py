"""Exact counts from published configs, built on the meta device (no weights, no downloads)."""
import pytest

import hadamard_lite as hl
from hadamard_lite.adapter import encoder_layers

# name: (base parameters, layers, hidden size)
PUBLISHED = {
    "bert-base-uncased": (109_482_240, 12, 768),
    "roberta-base": (124_645_632, 12, 768),
    "bert-large-uncased": (335_141_888, 24, 1024),
}


def adapter_count(name, layers=None):
    model = hl.model_from_config(hl.published_config(name))
    base_total = hl.count_parameters(model)[1]
    hl.add_hadamard_adapter(model, layers)
    hl.freeze_for_stage(model, "adapter")
    return hl.count_parameters(model)[0], base_total, model


@pytest.mark.parametrize("name", PUBLISHED)
def test_all_layers(name):
    total, num_layers, hidden = PUBLISHED[name]
    trainable, base_total, _ = adapter_count(name)
    assert base_total == total
    assert trainable == num_layers * 4 * hidden  # W, b, LayerNorm gamma, beta per layer


@pytest.mark.parametrize("name", PUBLISHED)
def test_a_third_of_layers_removed(name):
    total, num_layers, hidden = PUBLISHED[name]
    kept = list(range(num_layers * 2 // 3))
    trainable, _, _ = adapter_count(name, kept)
    assert trainable == len(kept) * 4 * hidden


def test_paper_percentages_on_bert_base(capsys):
    trainable, base_total, model = adapter_count("bert-base-uncased")
    assert (trainable, base_total) == (36_864, 109_482_240)
    assert f"{100 * trainable / base_total:.4f}%" == "0.0337%"
    hl.print_trainable_parameters(model)
    assert capsys.readouterr().out.strip().endswith("trainable%: 0.0337")
    trainable, base_total, _ = adapter_count("bert-base-uncased", list(range(8)))
    assert trainable == 24_576
    assert f"{100 * trainable / base_total:.4f}%" == "0.0224%"


def test_bundled_minilm_config():
    trainable, base_total, model = adapter_count(hl.DEFAULT_MODEL)
    assert base_total == 22_713_216 and len(encoder_layers(model)) == 6
    assert trainable == 6 * 4 * 384 == 9_216


def test_bert_base_adapter_file_under_200_kb(tmp_path):
    import torch
    config = hl.published_config("bert-base-uncased", num_labels=2)
    torch.manual_seed(0)
    from transformers import AutoModelForSequenceClassification
    model = AutoModelForSequenceClassification.from_config(config)
    hl.add_hadamard_adapter(model)
    hl.save_adapter(model, tmp_path)
    size = (tmp_path / "adapter_model.safetensors").stat().st_size
    assert size < 200_000, size
