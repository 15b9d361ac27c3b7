"""How many parameters each fine-tuning method trains, counted exactly from a model config.

Counts that are parts of the model itself (BitFit's biases, LayerNorms, the whole model) are
read off a weightless model built on the meta device; added modules (Houlsby adapters, LoRA,
IA3, Hadamard) are counted from their definition. The task head is left out everywhere, so the
numbers compare the methods, not the head.
"""
from .adapter import add_hadamard_adapter, post_attention_layer_norms
from .freezing import count_parameters
from .models import model_from_config, published_config


def _hadamard_trainable(model, layers=None) -> int:
    """Inject adapters into a (weightless) model and count adapters + post-attention LayerNorms."""
    add_hadamard_adapter(model, layers)
    adapters = sum(p.numel() for n, p in model.named_parameters() if ".hadamard." in n)
    return adapters + sum(p.numel() for m in post_attention_layer_norms(model).values() for p in m.parameters())


def _dims(config) -> tuple:
    """(layers, hidden size, feed-forward size) of a BERT-like config."""
    return config.num_hidden_layers, config.hidden_size, config.intermediate_size


def method_parameter_counts(config, houlsby_bottleneck: int = 64, lora_rank: int = 8, hadamard_layers=None) -> dict:
    """``{method: trainable parameters}`` for one encoder config (head excluded).

    - full: every parameter of the encoder.
    - houlsby: two bottleneck adapters per layer (down d->m and up m->d, with biases).
    - lora: rank-r updates of the query and value projections (A: d x r, B: r x d).
    - bitfit: every bias of the encoder.
    - ia3: scaling vectors on keys, values and the feed-forward activation (d + d + ff per layer),
      as in the IA3 paper; PEFT's default for BERT also scales the attention output's input (+d).
    - layernorm: every LayerNorm weight and bias.
    - hadamard: W and b of each adapter plus the post-attention LayerNorm of its layer.
    """
    layers, d, ff = _dims(config)
    model = model_from_config(config)
    names = dict(model.named_parameters())
    hadamard = _hadamard_trainable(model, hadamard_layers)
    return {
        "full": sum(p.numel() for p in names.values()),
        "houlsby": layers * 2 * (2 * d * houlsby_bottleneck + houlsby_bottleneck + d),
        "lora": layers * 2 * (d * lora_rank + lora_rank * d),
        "bitfit": sum(p.numel() for n, p in names.items() if n.endswith("bias")),
        "ia3": layers * (2 * d + ff),
        "layernorm": sum(p.numel() for n, p in names.items() if "LayerNorm" in n),
        "hadamard": hadamard,
    }


def hadamard_parameter_count(name: str, layers=None) -> tuple:
    """``(adapter + post-attention LayerNorm parameters, base model parameters)`` of a published model."""
    model = model_from_config(published_config(name))
    base = count_parameters(model)[1]
    return _hadamard_trainable(model, layers), base
