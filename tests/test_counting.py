"""Method counts: formulas checked against real PEFT modules on a small model."""
import pytest
import torch
from transformers import AutoConfig, AutoModel

import hadamard_lite as hl
from hadamard_lite.counting import hadamard_parameter_count, method_parameter_counts


def small_config():
    return AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                                intermediate_size=48, vocab_size=99)


def peft_trainable(config, peft_config):
    from peft import get_peft_model
    torch.manual_seed(0)
    return hl.count_parameters(get_peft_model(AutoModel.from_config(config), peft_config))[0]


def test_lora_and_ia3_formulas_match_peft():
    peft = pytest.importorskip("peft")
    config = small_config()
    counts = method_parameter_counts(config, lora_rank=4)
    assert counts["lora"] == peft_trainable(config, peft.LoraConfig(r=4, target_modules=["query", "value"]))
    ia3 = peft.IA3Config(target_modules=["key", "value", "intermediate.dense"], feedforward_modules=[])
    # IA3 scales the key and value outputs (d each) and the feed-forward activation, which is the
    # output of intermediate.dense (ff): the same vectors as scaling the input of output.dense.
    assert counts["ia3"] == peft_trainable(config, ia3)


def test_counts_read_off_the_model():
    config = small_config()
    counts = method_parameter_counts(config)
    model = AutoModel.from_config(config)
    assert counts["full"] == hl.count_parameters(model)[1]
    assert counts["layernorm"] == 2 * 32 * (2 * 3 + 1)  # embeddings + two per layer
    assert counts["hadamard"] == 3 * 4 * 32
    assert counts["houlsby"] == 3 * 2 * (2 * 32 * 64 + 64 + 32)


def test_paper_numbers():
    assert hadamard_parameter_count("bert-base-uncased") == (36_864, 109_482_240)
    assert hadamard_parameter_count("bert-base-uncased", layers=range(8))[0] == 24_576
    counts = method_parameter_counts(hl.published_config("bert-base-uncased"))
    assert counts["lora"] == 294_912  # 0.3M, as the paper's table
    assert counts["bitfit"] == 102_912  # 0.1M
    assert counts["layernorm"] == 38_400 and counts["ia3"] == 55_296
