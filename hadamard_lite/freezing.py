"""Which parameters train, and how many there are.

The paper's two stages: first only the classifier head trains ("head"); then only the
adapters and the LayerNorm right after each adapted attention block ("adapter").
"""
from torch import nn

from .adapter import adapted_layers, hadamard_adapters, post_attention_layer_norms

STAGES = ("head", "adapter")
PARTS = ("weight", "bias", "layernorm")  # what stage 2 trains: the adapter's W, its b, the LayerNorm after it


def head_parameters(model: nn.Module) -> dict:
    """``{name: parameter}`` of everything outside the pre-trained encoder: the task head.

    For BERT that is ``classifier``; for DeBERTa ``pooler`` and ``classifier``; for
    DistilBERT ``pre_classifier`` and ``classifier``. A bare encoder has none.
    """
    if model.base_model is model:
        return {}
    prefix = model.base_model_prefix + "."
    return {n: p for n, p in model.named_parameters() if not n.startswith(prefix)}


def freeze_for_stage(model: nn.Module, stage: str, train_head: bool = False, parts=PARTS) -> nn.Module:
    """Set ``requires_grad`` for one stage of the two-stage recipe.

    ``"head"``: only the classifier head trains. ``"adapter"``: only the Hadamard adapters and
    the post-attention LayerNorms of the adapted layers train, plus the head if ``train_head``.
    ``parts`` narrows stage "adapter" to some of ``PARTS`` (the paper's question of which parts
    matter): ``("bias",)`` trains only b, leaving W at its value (1 at start) and the LayerNorm frozen.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; use one of {STAGES}")
    parts = (parts,) if isinstance(parts, str) else parts  # "bias" means ("bias",), not its letters
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ValueError(f"parts must be a non-empty subset of {PARTS}, got {tuple(parts)}")
    head = head_parameters(model)
    if stage == "head" and not head:
        raise ValueError("stage 'head' needs a model with a task head, e.g. AutoModelForSequenceClassification")
    if stage == "adapter" and not adapted_layers(model):
        if getattr(model, "_hadamard_merged", None):
            raise ValueError("stage 'adapter' needs adapters, and this model's are merged into its weights: "
                             "call unmerge_adapter(model) first")
        raise ValueError("stage 'adapter' needs adapters: call add_hadamard_adapter(model) first")
    model.requires_grad_(False)
    if stage == "head" or train_head:
        for p in head.values():
            p.requires_grad_(True)
    if stage == "adapter":
        for adapter in hadamard_adapters(model).values():
            adapter.weight.requires_grad_("weight" in parts)
            adapter.bias.requires_grad_("bias" in parts)
        if "layernorm" in parts:
            for norm in post_attention_layer_norms(model).values():
                norm.requires_grad_(True)
    return model


def count_parameters(model: nn.Module) -> tuple:
    """``(trainable, total)``. A parameter shared by several modules counts once."""
    params = list(model.parameters())  # .parameters() already yields each tensor once
    trainable = sum(p.numel() for p in params if p.requires_grad)
    return trainable, sum(p.numel() for p in params)


def print_trainable_parameters(model: nn.Module) -> None:
    """Print counts in PEFT's format, so the numbers read the same as there."""
    trainable, total = count_parameters(model)
    print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")
