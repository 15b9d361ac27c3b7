"""Adapter files: everything that was trained, and nothing else.

A directory with ``adapter_config.json`` (sorted keys) and ``adapter_model.safetensors``
(adapter weights and biases, the post-attention LayerNorms of the adapted layers, and the
task head if the model has one), the layout PEFT uses. A bert-base adapter is about 150 KB.
The config uses PEFT's keys where they mean the same thing (``base_model_name_or_path``: the
hub id of the base model; ``layers_to_transform``; ``task_type``; ``peft_type``), and files
written with the older keys (``base_model``, ``layers``) still load.
"""
import json
import os
import tempfile
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from .adapter import add_hadamard_adapter, adapted_layers, architecture_of, encoder_layers, remove_hadamard_adapter
from .freezing import head_parameters
from .models import base_model_id

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same directory, then rename: a crash mid-write
    leaves the old file (or none), never a truncated one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        # mkstemp (and safetensors, which replaces the file) make it private (0600), and the rename
        # keeps that: give it the mode a plain open() would, so other users and containers can read it.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _trained_tensors(model: nn.Module) -> tuple:
    """``({state-dict name: tensor}, groups)`` for what the two-stage recipe trains."""
    layers = adapted_layers(model)
    wanted = set()
    for name, module in model.named_modules():
        if name.endswith(".hadamard"):
            wanted.update(f"{name}.{p}" for p, _ in module.named_parameters())
    spec = architecture_of(model)
    prefix = "" if model.base_model is model else model.base_model_prefix + "."
    base_names = {m: n for n, m in model.base_model.named_modules()}
    all_layers = encoder_layers(model)
    for i in layers:
        norm = all_layers[i].get_submodule(spec.layer_norm)
        wanted.update(f"{prefix}{base_names[norm]}.{p}" for p, _ in norm.named_parameters())
    head = head_parameters(model)
    wanted.update(head)
    groups = ["adapter", "layer_norm"] + (["head"] if head else [])
    params = dict(model.named_parameters())
    return {n: params[n].detach() for n in sorted(wanted)}, groups


def save_adapter(model: nn.Module, directory) -> Path:
    """Write the adapter files of ``model`` into ``directory`` (created if needed)."""
    from . import __version__

    layers = adapted_layers(model)
    if not layers:
        raise ValueError("this model has no (unmerged) Hadamard adapters to save; "
                         "call add_hadamard_adapter first, or unmerge_adapter if you merged")
    tensors, groups = _trained_tensors(model)
    config = {
        "base_model_name_or_path": _model_name(model),
        "peft_type": "HADAMARD",  # PEFT's key for the method; PEFT itself has no Hadamard adapter
        "task_type": "SEQ_CLS" if "head" in groups else "FEATURE_EXTRACTION",
        "model_type": model.config.model_type,
        "hidden_size": model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim,
        "num_layers": len(encoder_layers(model)),
        "layers_to_transform": layers,
        "groups": groups,
        "num_labels": getattr(model.config, "num_labels", None) if "head" in groups else None,
        "hadamard_lite_version": __version__,
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # safetensors wants contiguous CPU tensors that share no memory.
    cpu = {n: t.to("cpu").contiguous().clone() for n, t in tensors.items()}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(cpu, tmp, metadata={"format": "pt"}))
    atomic_write(directory / CONFIG_NAME,
                  lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n"))
    return directory


def _model_name(model: nn.Module) -> str:
    """The hub id (or local folder) ``model`` was loaded from; "" for a model built from a config."""
    return base_model_id(getattr(model.config, "_name_or_path", "") or "")


# Keys of files written before the config used PEFT's names: old name -> new name.
OLD_KEYS = {"base_model": "base_model_name_or_path", "layers": "layers_to_transform"}


def read_adapter_config(directory) -> dict:
    """The parsed ``adapter_config.json`` of ``directory``, with clear errors."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no adapter config at {path}: expected a directory written by save_adapter")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the adapter directory is corrupt, save it again") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path} holds a JSON {type(config).__name__}, not an object; it was not written by save_adapter")
    for old, new in OLD_KEYS.items():
        if old in config and new not in config:
            config[new] = config.pop(old)
    config["base_model_name_or_path"] = base_model_id(config.get("base_model_name_or_path") or "")
    missing = {"model_type", "hidden_size", "layers_to_transform", "groups"} - set(config)
    if missing:
        raise ValueError(f"{path} lacks {sorted(missing)}; it was not written by save_adapter")
    layers = config["layers_to_transform"]
    if not isinstance(layers, list) or not layers or not all(type(i) is int and i >= 0 for i in layers):
        raise ValueError(f"{path} has layers_to_transform {layers!r}, not a list of layer numbers; "
                         "it was edited or not written by save_adapter: save the adapter again")
    return config


def read_adapter_weights(directory) -> dict:
    """The tensors of ``directory``'s weights file, with a clear error if it is missing or corrupt."""
    weights = Path(directory) / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"no adapter weights at {weights}: expected a directory written by save_adapter")
    try:
        return load_file(weights)
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{weights} is corrupt or not a safetensors file ({err}); save the adapter again") from err


def load_adapter(model: nn.Module, directory) -> nn.Module:
    """Load adapter files into ``model`` (a fresh base model, or one with matching adapters).

    Everything is checked before any weight is copied; if a check fails, ``model`` is left
    exactly as it was (adapters this call injected are taken out again).
    """
    directory = Path(directory)
    config = read_adapter_config(directory)
    layers = config["layers_to_transform"]
    # A different name with the same shapes is a different checkpoint of one architecture: it
    # loads, with a warning; a different name with other shapes is refused, saying both.
    recorded, name = config["base_model_name_or_path"], _model_name(model)
    other_model = (f"the adapter was trained on {recorded!r} but this model is {name!r}, and "
                   if recorded and name and recorded != name else "")
    hidden = model.config.hidden_size if hasattr(model.config, "hidden_size") else model.config.dim
    theirs = (config["model_type"], config["hidden_size"])
    ours = (model.config.model_type, hidden)
    if theirs != ours:
        raise ValueError(f"adapter in {directory} does not fit: {other_model}it is for model type {theirs[0]!r} with "
                         f"hidden size {theirs[1]}, but this model is {ours[0]!r} with hidden size {ours[1]}")
    # Tensor names start with the base model's prefix ("bert.") only in a model with a task head, so an
    # adapter saved with a head does not load into a bare encoder, nor the other way round: say so plainly.
    saved_head, has_head = "head" in config["groups"], bool(head_parameters(model))
    if saved_head != has_head:
        fix = (f"load it into a model with a task head: load_model(num_labels={config.get('num_labels')})" if saved_head
               else "load it into the bare encoder it was saved from (transformers.AutoModel)")
        raise ValueError(f"adapter in {directory} was saved {'with' if saved_head else 'without'} a task head, but "
                         f"this model has {'none' if saved_head else 'one'}; {fix}")
    num_layers = len(encoder_layers(model))
    present = adapted_layers(model)
    if present and present != layers:
        raise ValueError(f"adapter in {directory} has layers {layers}, but this model already has "
                         f"adapters on layers {present}; call remove_hadamard_adapter(model) first")
    if any(not 0 <= i < num_layers for i in layers):
        raise ValueError(f"adapter in {directory} does not fit: {other_model}it has layers {layers}, "
                         f"but this model has only {num_layers} layers (0 to {num_layers - 1})")
    tensors = read_adapter_weights(directory)

    injected = not present
    if injected:
        add_hadamard_adapter(model, layers)
    try:
        params = dict(model.named_parameters())
        expected, _ = _trained_tensors(model)
        problems = [f"missing from file: {n}" for n in expected if n not in tensors]
        problems += [f"not in model: {n}" for n in tensors if n not in params]
        problems += [f"{n}: file has shape {tuple(t.shape)}, model has {tuple(params[n].shape)}"
                     for n, t in tensors.items() if n in params and params[n].shape != t.shape]
        if problems:
            raise ValueError(f"adapter in {directory} does not fit this model: {other_model}" + "; ".join(problems[:5]))
    except BaseException:
        if injected:
            remove_hadamard_adapter(model)
        raise
    if other_model:
        warnings.warn(f"adapter in {directory}: {other_model}the shapes match, so it loads; results will differ "
                      f"from those it was trained for: load it into {recorded!r} to reproduce them", stacklevel=2)
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor)
    return model
