"""The Hadamard adapter and its injection into Hugging Face encoders.

The method (Chen et al., CIKM 2023): at every Transformer layer the self-attention
output A becomes ``W * A + b``, with W and b vectors of the hidden size, W = 1 and
b = 0 at start. We place it on the output of the attention output projection, before
the residual add and the post-attention LayerNorm:

    >>> from hadamard_lite import add_hadamard_adapter, merge_adapter
    >>> model = add_hadamard_adapter(model)        # identity at start
    >>> merge_adapter(model)                       # fold into the projection: free at inference

Injection wraps the projection ``nn.Linear`` in a small ``HadamardLinear`` that holds the
original layer as ``.linear`` and the adapter as ``.hadamard``; removal puts the original
layer back, so nothing about the pre-trained weights is copied or changed. The recipe also
trains the post-attention LayerNorm in place, so injection keeps a copy of its pre-trained
values and removal puts those back too: after removal the model is the base model again.
"""
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


class HadamardAdapter(nn.Module):
    """Element-wise affine map ``x * weight + bias`` over the last (hidden) dimension.

    Broadcasting applies the same ``weight`` and ``bias`` to every token of every sequence.
    """

    def __init__(self, hidden_size: int, device=None, dtype=None):
        super().__init__()
        # Ones and zeros make the adapter the identity, so injection changes nothing
        # until training moves it.
        self.weight = nn.Parameter(torch.ones(hidden_size, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(hidden_size, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"hidden_size={self.weight.shape[0]}"


class HadamardLinear(nn.Module):
    """A frozen-or-not ``nn.Linear`` followed by a Hadamard adapter."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        self.linear = linear
        self.hadamard = HadamardAdapter(
            linear.out_features, device=linear.weight.device, dtype=linear.weight.dtype
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hadamard(self.linear(x))


def _pooled_head(head, outputs):
    # BERT, ERNIE, ALBERT: the base model's pooler (frozen, shared) feeds dropout and a Linear.
    return head.classifier(head.dropout(outputs[1]))


def _sequence_head(head, outputs):
    # RoBERTa, XLM-R, CamemBERT, ELECTRA, MPNet: a two-layer head that reads the first token itself.
    return head.classifier(outputs[0])


def _deberta_head(head, outputs):
    # DeBERTa keeps its pooler outside the base model, so it belongs to the task head.
    return head.classifier(head.dropout(head.pooler(outputs[0])))


def _distilbert_head(head, outputs):
    return head.classifier(head.dropout(torch.relu(head.pre_classifier(outputs[0][:, 0]))))


@dataclass(frozen=True)
class Architecture:
    """Where, inside the base model, the layers, projections and LayerNorms live."""

    layers: Callable[[nn.Module], list]  # base model -> list of Transformer layers
    projection: str  # path, inside a layer, of the attention output projection
    layer_norm: str  # path, inside a layer, of the post-attention LayerNorm
    # (head modules, base model outputs) -> logits: what *ForSequenceClassification.forward does
    # after its base model, for a multi-task model that holds one head per task. The head modules
    # are the classification model's children outside the base model, by the same names.
    head: Callable[[nn.Module, tuple], torch.Tensor] = _pooled_head


_BERT_LIKE = Architecture(
    lambda base: list(base.encoder.layer), "attention.output.dense", "attention.output.LayerNorm"
)
_ROBERTA_LIKE = Architecture(
    lambda base: list(base.encoder.layer), "attention.output.dense", "attention.output.LayerNorm", _sequence_head
)
_DEBERTA_LIKE = Architecture(
    lambda base: list(base.encoder.layer), "attention.output.dense", "attention.output.LayerNorm", _deberta_head
)

ARCHITECTURES = {
    "bert": _BERT_LIKE,
    "roberta": _ROBERTA_LIKE,
    "xlm-roberta": _ROBERTA_LIKE,
    "camembert": _ROBERTA_LIKE,
    "electra": _ROBERTA_LIKE,
    "ernie": _BERT_LIKE,
    "deberta": _DEBERTA_LIKE,
    "deberta-v2": _DEBERTA_LIKE,  # DeBERTa-v3 checkpoints use this model type too
    "distilbert": Architecture(
        lambda base: list(base.transformer.layer), "attention.out_lin", "sa_layer_norm", _distilbert_head
    ),
    # ALBERT shares one set of layer weights across all its passes (usually a single
    # layer in a single group, run num_hidden_layers times). Its "layers" here are the
    # distinct shared layers, so one adapter is shared by every pass that uses that layer:
    # albert-base-v2 gets one adapter, not twelve.
    "albert": Architecture(
        lambda base: [layer for group in base.encoder.albert_layer_groups for layer in group.albert_layers],
        "attention.dense",
        "attention.LayerNorm",
    ),
    "mpnet": Architecture(lambda base: list(base.encoder.layer), "attention.attn.o", "attention.LayerNorm",
                          _sequence_head),
}


def architecture_of(model: nn.Module) -> Architecture:
    """The injection recipe for ``model``, or a ValueError listing what is supported."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(
            f"hadamard_lite does not support model type {model_type!r}. "
            f"Supported model types: {', '.join(sorted(ARCHITECTURES))}. "
            "Pass a Hugging Face encoder (or its *ForSequenceClassification) of one of these types."
        )
    return ARCHITECTURES[model_type]


def encoder_layers(model: nn.Module) -> list:
    """The Transformer layers an adapter can go into, in order."""
    return architecture_of(model).layers(model.base_model)


def _parent_and_name(root: nn.Module, path: str):
    parent_path, _, name = path.rpartition(".")
    return (root.get_submodule(parent_path) if parent_path else root), name


def normalize_layers(layers, num_layers: int) -> list:
    """Turn ``None`` or indices (negatives allowed) into a sorted list of distinct indices."""
    if layers is None:
        return list(range(num_layers))
    if isinstance(layers, int):
        layers = [layers]
    result = []
    for index in layers:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"layer indices must be integers, got {index!r}")
        if not -num_layers <= index < num_layers:
            raise IndexError(
                f"layer index {index} is out of range: this model has {num_layers} layers, "
                f"so indices go from {-num_layers} to {num_layers - 1}"
            )
        result.append(index % num_layers)
    if len(set(result)) != len(result):
        raise ValueError(f"layers {list(layers)} name the same layer twice")
    return sorted(result)


def adapted_layers(model: nn.Module) -> list:
    """Indices of the layers that currently hold an adapter (merged ones excluded)."""
    spec = architecture_of(model)
    return [
        i for i, layer in enumerate(spec.layers(model.base_model))
        if isinstance(layer.get_submodule(spec.projection), HadamardLinear)
    ]


def hadamard_adapters(model: nn.Module) -> dict:
    """``{layer index: HadamardAdapter}`` for every adapted layer."""
    spec = architecture_of(model)
    layers = spec.layers(model.base_model)
    return {i: layers[i].get_submodule(spec.projection).hadamard for i in adapted_layers(model)}


def post_attention_layer_norms(model: nn.Module, layers=None) -> dict:
    """``{layer index: LayerNorm}`` after self-attention, for ``layers`` (default: adapted ones)."""
    spec = architecture_of(model)
    all_layers = spec.layers(model.base_model)
    if layers is None:
        layers = adapted_layers(model)
    return {i: all_layers[i].get_submodule(spec.layer_norm) for i in layers}


def add_hadamard_adapter(model: nn.Module, layers=None) -> nn.Module:
    """Put one identity-initialised adapter after the attention output projection of each
    selected layer (all by default; ``layers`` takes indices, negatives allowed).

    Everything is checked before anything changes, so a bad call leaves ``model`` as it was.
    """
    spec = architecture_of(model)
    all_layers = spec.layers(model.base_model)
    if adapted_layers(model) or getattr(model, "_hadamard_merged", None):
        raise ValueError(
            "this model already has Hadamard adapters (merged or not); "
            "call remove_hadamard_adapter(model) first to inject a new set"
        )
    chosen = normalize_layers(layers, len(all_layers))
    for i in chosen:
        projection = all_layers[i].get_submodule(spec.projection)
        if not isinstance(projection, nn.Linear):
            raise TypeError(f"layer {i}: expected an nn.Linear at {spec.projection!r}, found {type(projection).__name__}")
    for i in chosen:
        parent, name = _parent_and_name(all_layers[i], spec.projection)
        wrapper = HadamardLinear(getattr(parent, name))
        # A plain dict, not a buffer: it stays out of state_dict, saved files and parameter counts.
        norm = all_layers[i].get_submodule(spec.layer_norm)
        wrapper.base_layer_norm = {k: v.detach().clone() for k, v in norm.state_dict().items()}
        setattr(parent, name, wrapper)
    return model


def remove_hadamard_adapter(model: nn.Module) -> nn.Module:
    """Put the original projections back (unmerging first if the adapters were merged) and the
    post-attention LayerNorms of those layers as they were when the adapters went in, so that
    another task's adapter loads into the base model, not into this task's LayerNorms."""
    spec = architecture_of(model)
    if getattr(model, "_hadamard_merged", None):
        unmerge_adapter(model)
    for layer in spec.layers(model.base_model):
        parent, name = _parent_and_name(layer, spec.projection)
        module = getattr(parent, name)
        if isinstance(module, HadamardLinear):
            saved = getattr(module, "base_layer_norm", None)
            if saved is not None:
                with torch.no_grad():
                    for key, value in layer.get_submodule(spec.layer_norm).state_dict(keep_vars=True).items():
                        value.copy_(saved[key])
            setattr(parent, name, module.linear)
    return model


@torch.no_grad()
def merge_adapter(model: nn.Module) -> nn.Module:
    """Fold every adapter into its projection and take it out of the forward pass.

    W * (D x + c) + b = (diag(W) D) x + (W * c + b): scale the projection's output rows by W
    and map its bias through the adapter. The wrapper (original projection plus adapter) is
    kept aside on the model so that ``unmerge_adapter`` restores the exact original weights.
    """
    spec = architecture_of(model)
    layers = spec.layers(model.base_model)
    indices = adapted_layers(model)
    if not indices:
        raise ValueError("this model has no unmerged Hadamard adapters to merge; call add_hadamard_adapter first")
    kept = {}
    for i in indices:
        parent, name = _parent_and_name(layers[i], spec.projection)
        wrapped = getattr(parent, name)
        linear, adapter = wrapped.linear, wrapped.hadamard
        merged = nn.Linear(linear.in_features, linear.out_features, bias=True,
                           device=linear.weight.device, dtype=linear.weight.dtype)
        merged.weight.copy_(linear.weight * adapter.weight[:, None])
        bias = linear.bias if linear.bias is not None else torch.zeros_like(adapter.bias)
        merged.bias.copy_(bias * adapter.weight + adapter.bias)
        merged.requires_grad_(linear.weight.requires_grad)
        setattr(parent, name, merged)
        kept[i] = wrapped
    # A plain attribute (not a submodule), so merged models save and count like the base model.
    object.__setattr__(model, "_hadamard_merged", kept)
    return model


def unmerge_adapter(model: nn.Module) -> nn.Module:
    """Undo ``merge_adapter``: the original projections and the adapters come back."""
    kept = getattr(model, "_hadamard_merged", None)
    if not kept:
        raise ValueError("this model has no merged Hadamard adapters; merge_adapter(model) was not called")
    spec = architecture_of(model)
    layers = spec.layers(model.base_model)
    for i, wrapped in kept.items():
        parent, name = _parent_and_name(layers[i], spec.projection)
        merged = getattr(parent, name)
        # .to(model) never reached the kept wrappers (a plain attribute): follow the merged layer.
        setattr(parent, name, wrapped.to(device=merged.weight.device, dtype=merged.weight.dtype))
    object.__setattr__(model, "_hadamard_merged", None)
    return model
