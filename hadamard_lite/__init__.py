"""hadamard-lite: the Hadamard adapter (Chen et al., CIKM 2023) for Hugging Face encoders."""
__version__ = "0.1.0"

from .adapter import (
    HadamardAdapter,
    HadamardLinear,
    add_hadamard_adapter,
    adapted_layers,
    hadamard_adapters,
    merge_adapter,
    post_attention_layer_norms,
    remove_hadamard_adapter,
    unmerge_adapter,
)
from .adapter_files import load_adapter, save_adapter
from .freezing import count_parameters, freeze_for_stage, head_parameters, print_trainable_parameters
from .multitask import MultiTaskModel
from .models import DEFAULT_MODEL, load_model, load_tokenizer, published_config, model_from_config

__all__ = [
    "HadamardAdapter", "HadamardLinear", "add_hadamard_adapter", "adapted_layers", "hadamard_adapters",
    "merge_adapter", "post_attention_layer_norms", "remove_hadamard_adapter", "unmerge_adapter",
    "load_adapter", "save_adapter", "count_parameters", "freeze_for_stage", "head_parameters",
    "print_trainable_parameters", "DEFAULT_MODEL", "load_model", "load_tokenizer", "published_config",
    "model_from_config", "MultiTaskModel",
]
