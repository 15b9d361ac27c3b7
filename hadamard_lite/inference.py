"""Predictions from a model, on whatever device the model is on.

    scores = logits(model, tokenizer, dev)                      # a GlueSplit: one row per example, in its order
    scores = logits(model, tokenizer, ["a gripping film ."])    # or plain sentences (or (a, b) pairs)
    labels = predictions(model, tokenizer, dev)                 # class ids, or scores for regression
    features = mean_pooled(model, tokenizer, dev)               # frozen sentence embeddings

A model moved by ``Trainer`` lives on the GPU (CUDA or Apple MPS) while tokenizers and
``data.batches`` make CPU tensors; feeding one to the other fails there and works on a laptop,
so the bug hides until someone has a GPU. Every function here moves each batch to the model's
device and brings the results back to the CPU. Batching is ``data.batches`` (length-grouped).
"""
from contextlib import nullcontext

import torch
from torch import nn

from .data import GlueSplit, batches
from .glue_tasks import get_task


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (where its inputs must be)."""
    return next(model.parameters()).device


def to_device(batch: dict, device) -> dict:
    """The model's inputs of ``batch`` on ``device``: those of ``input_ids``, ``attention_mask`` and
    ``token_type_ids`` it has (``data.batches`` gives no ``token_type_ids``; see there why)."""
    keep = ("input_ids", "attention_mask", "token_type_ids")
    return {k: v.to(device) for k, v in batch.items() if k in keep}


def as_split(texts, task: str = "sst2") -> GlueSplit:
    """A ``GlueSplit`` of plain sentences (or ``(a, b)`` pairs), label-less, so that
    sentences go through the same batching as GLUE data."""
    if isinstance(texts, str):
        raise ValueError("pass a list of sentences, not one string: [\"a gripping film .\"]")
    texts = list(texts)
    pairs = bool(texts) and isinstance(texts[0], (tuple, list))
    text_a = [t[0] for t in texts] if pairs else texts
    text_b = [t[1] for t in texts] if pairs else None
    return GlueSplit(get_task("mrpc" if pairs else task), "input", "given sentences", text_a, text_b, [0] * len(texts))


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return nullcontext()
    if precision not in ("bf16", "fp16"):
        raise ValueError(f"unknown precision {precision!r}; use fp32, bf16 or fp16")
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@torch.no_grad()
def _per_example(fn, model: nn.Module, tokenizer, data, batch_size: int, max_length: int) -> torch.Tensor:
    """``fn(model, inputs) -> (batch, ...)`` over every example, in the data's order, on the CPU."""
    data = data if isinstance(data, GlueSplit) else as_split(data)
    device = model_device(model)
    was_training = model.training
    model.eval()
    rows, order = [], []
    try:
        for batch in batches(data, tokenizer, batch_size, max_length):
            rows.append(fn(model, to_device(batch, device)).float().cpu())
            order.append(batch["index"])
    finally:
        model.train(was_training)  # a caller's training loop goes on with dropout as it was
    if not rows:
        raise ValueError("no examples to run the model on: the data is empty")
    out = torch.empty((len(data), *rows[0].shape[1:]))
    out[torch.cat(order)] = torch.cat(rows)  # batches are grouped by length: put rows back in order
    return out


def logits(model: nn.Module, tokenizer, data, batch_size: int = 128, max_length: int = 128,
           precision: str = "fp32") -> torch.Tensor:
    """The model's logits, (examples, labels), float32 on the CPU, in the order of ``data`` (a
    ``GlueSplit`` or a list of sentences or sentence pairs). ``precision`` "bf16"/"fp16" runs under autocast."""
    device = model_device(model)

    def forward(m, inputs):
        with _autocast(device, precision):
            return m(**inputs).logits
    return _per_example(forward, model, tokenizer, data, batch_size, max_length)


def predictions(model: nn.Module, tokenizer, data, **kwargs) -> list:
    """Class ids (or, for a regression task such as STS-B, the predicted scores) per example."""
    values = logits(model, tokenizer, data, **kwargs)
    regression = values.shape[-1] == 1
    return (values.squeeze(-1) if regression else values.argmax(-1)).tolist()


def mean_pooled(model: nn.Module, tokenizer, data, batch_size: int = 128, max_length: int = 128) -> torch.Tensor:
    """Sentence embeddings: the mean of the encoder's last hidden states over real (non-padding)
    tokens, (examples, hidden), as sentence-transformers models such as MiniLM were trained to use."""
    encoder = getattr(model, "base_model", model)

    def pool(m, inputs):
        hidden = encoder(**inputs).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1)
    return _per_example(pool, model, tokenizer, data, batch_size, max_length)
