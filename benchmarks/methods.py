"""The methods the benchmarks compare, each as "a fresh pre-trained model with exactly its
parameters trainable", so every script trains them the same way.

    model = prepare("bitfit", num_labels=2)

hadamard (one stage): adapters + post-attention LayerNorms + head train together.
The two-stage recipe is not a model preparation but a procedure: ``train_two_stage`` in
``hadamard_lite.trainer``, exactly what ``python -m hadamard_lite train`` runs.
"""
import tempfile
from pathlib import Path

from safetensors.torch import save_file

import hadamard_lite as hl

METHODS = ["full", "head", "hadamard2", "hadamard1", "bitfit", "layernorm", "ia3", "lora"]
DESCRIPTIONS = {
    "full": "full fine-tuning",
    "head": "head only",
    "hadamard2": "Hadamard, two-stage recipe (the library's default)",
    "hadamard1": "Hadamard, one stage (adapters + LayerNorms + head together)",
    "bitfit": "BitFit (biases + head)",
    "layernorm": "LayerNorm only (+ head)",
    "ia3": "PEFT IA3",
    "lora": "PEFT LoRA r=8 (query, value)",
}


def prepare(method: str, num_labels: int, model=None):
    """A pre-trained model (``model`` or a fresh one) with exactly ``method``'s parameters trainable.
    For "hadamard2" this is stage 1's starting point: ``train_two_stage`` does the rest."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    model = model or hl.load_model(num_labels=num_labels)
    head = set(hl.head_parameters(model))
    if method == "full":
        model.requires_grad_(True)
    elif method in ("head", "hadamard2"):
        hl.freeze_for_stage(model, "head")
    elif method == "hadamard1":
        hl.add_hadamard_adapter(model)
        hl.freeze_for_stage(model, "adapter", train_head=True)
    elif method in ("bitfit", "layernorm"):
        for name, p in model.named_parameters():
            keep = name.endswith(".bias") if method == "bitfit" else "LayerNorm" in name
            p.requires_grad_(keep or name in head)
    else:
        from peft import IA3Config, LoraConfig, get_peft_model
        config = (IA3Config(task_type="SEQ_CLS") if method == "ia3" else
                  LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"]))
        model = get_peft_model(model, config)
    return model


def file_size(model, method: str) -> int:
    """Bytes a user must store per task: the adapter file, or the trainable weights in safetensors."""
    with tempfile.TemporaryDirectory() as tmp:
        if method.startswith("hadamard"):
            hl.save_adapter(model, tmp)
            return (Path(tmp) / "adapter_model.safetensors").stat().st_size
        if method in ("ia3", "lora"):
            model.save_pretrained(tmp)
            return (Path(tmp) / "adapter_model.safetensors").stat().st_size
        state = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, f"{tmp}/w.safetensors")
        return Path(f"{tmp}/w.safetensors").stat().st_size
