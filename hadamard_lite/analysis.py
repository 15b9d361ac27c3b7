"""The analyses behind the paper's findings, as functions: what the adapters learned, how alike
they are across tasks, which layers matter, and how attention outputs change under fine-tuning::

    stats = adapter_statistics(model)                          # per layer: how far W is from 1, b from 0
    sim = cross_task_similarity({"sst2": m1, "rte": m2})       # per layer: cosine of W-1 and of b
    ranking = layer_importance(model, pretrained, tokenizer, dev)
    r2 = fit_attention_maps(capture_attention_outputs(pre, ...), capture_attention_outputs(post, ...))
"""
import numpy as np
import torch
from torch import nn

from .adapter import architecture_of, encoder_layers, hadamard_adapters, post_attention_layer_norms
from .inference import model_device, predictions, to_device


def adapter_vectors(model: nn.Module) -> tuple:
    """``(layers, W, b)``: adapted layer indices and float64 arrays of shape (layers, hidden)."""
    adapters = hadamard_adapters(model)
    if not adapters:
        raise ValueError("this model has no Hadamard adapters to analyse; train or load one first")
    w = np.stack([a.weight.detach().cpu().double().numpy() for a in adapters.values()])
    b = np.stack([a.bias.detach().cpu().double().numpy() for a in adapters.values()])
    return list(adapters), w, b


def pattern_vectors(model: nn.Module, pretrained: nn.Module) -> dict:
    """Everything stage 2 changes, per adapted layer, as float64 arrays of shape (layers, hidden):
    ``w`` (W - 1), ``b``, ``ln_weight`` and ``ln_bias`` (the post-attention LayerNorm's gamma and
    beta minus their pre-trained values). Each is zero for an untrained adapter."""
    layers, w, b = adapter_vectors(model)
    tuned, original = post_attention_layer_norms(model, layers), post_attention_layer_norms(pretrained, layers)

    def change(name):
        return np.stack([(getattr(tuned[i], name) - getattr(original[i], name).to(getattr(tuned[i], name)))
                         .detach().cpu().double().numpy() for i in layers])
    return {"layers": layers, "w": w - 1, "b": b, "ln_weight": change("weight"), "ln_bias": change("bias")}


def adapter_statistics(model: nn.Module) -> list:
    """Per adapted layer: mean and max of ``|W - 1|`` and ``|b|``, and the L2 norms of ``W - 1`` and ``b``."""
    layers, w, b = adapter_vectors(model)
    return [{"layer": layer, "w_mean_abs": float(np.abs(w[i] - 1).mean()), "w_max_abs": float(np.abs(w[i] - 1).max()),
             "w_norm": float(np.linalg.norm(w[i] - 1)), "b_mean_abs": float(np.abs(b[i]).mean()),
             "b_max_abs": float(np.abs(b[i]).max()), "b_norm": float(np.linalg.norm(b[i]))}
            for i, layer in enumerate(layers)]


def _cosine(x: np.ndarray, y: np.ndarray) -> float:
    denominator = np.linalg.norm(x) * np.linalg.norm(y)
    return float(x @ y / denominator) if denominator else 0.0


def cross_task_similarity(models: dict) -> dict:
    """Cosine similarity between tasks' adapters, layer by layer.

    ``models`` maps a task name to a model with adapters on the same layers. Returns
    ``{"tasks", "layers", "w", "b"}`` where ``w[l, i, j]`` is the cosine of (W - 1) of tasks i
    and j at layer l, and ``b`` the same for the biases.
    """
    tasks = list(models)
    vectors = {t: adapter_vectors(m) for t, m in models.items()}
    layers = vectors[tasks[0]][0]
    if any(v[0] != layers for v in vectors.values()):
        raise ValueError(f"the adapters are on different layers: { {t: v[0] for t, v in vectors.items()} }")
    out = {"tasks": tasks, "layers": layers}
    for key, index, offset in (("w", 1, 1.0), ("b", 2, 0.0)):
        out[key] = np.array([[[_cosine(vectors[a][index][l] - offset, vectors[c][index][l] - offset) for c in tasks]
                              for a in tasks] for l in range(len(layers))])
    return out


@torch.no_grad()
def reset_layer(model: nn.Module, pretrained: nn.Module, layer: int) -> dict:
    """Put one layer's adapter back to the identity and its post-attention LayerNorm back to the
    pre-trained values. Returns the old values, for ``restore_layer``."""
    adapter = hadamard_adapters(model)[layer]
    norm = post_attention_layer_norms(model, [layer])[layer]
    original = post_attention_layer_norms(pretrained, [layer])[layer]
    saved = {"adapter": {k: v.clone() for k, v in adapter.state_dict().items()},
             "norm": {k: v.clone() for k, v in norm.state_dict().items()}}
    adapter.weight.fill_(1.0)
    adapter.bias.zero_()
    norm.load_state_dict(original.state_dict())
    return saved


@torch.no_grad()
def restore_layer(model: nn.Module, layer: int, saved: dict) -> None:
    hadamard_adapters(model)[layer].load_state_dict(saved["adapter"])
    post_attention_layer_norms(model, [layer])[layer].load_state_dict(saved["norm"])


def layer_importance(model: nn.Module, pretrained: nn.Module, evaluate) -> list:
    """Rank adapted layers by the drop in a score when that layer alone is reset.

    ``evaluate(model) -> float`` scores the model (higher is better). Score on held-out training
    examples, not on the dev set you will report: a ranking chosen on the dev set makes the pruned
    model's dev score look better than it is. ``pretrained`` is the base
    model the adapters were trained on (for the original LayerNorms). Returns dicts sorted from the
    most to the least important layer.
    """
    from tqdm.auto import tqdm

    full = evaluate(model)
    rows = []
    for layer in tqdm(list(hadamard_adapters(model)), desc="layer importance", leave=False):
        saved = reset_layer(model, pretrained, layer)
        score = evaluate(model)
        restore_layer(model, layer, saved)
        rows.append({"layer": layer, "score_without": score, "drop": full - score})
    return sorted(rows, key=lambda r: -r["drop"])


@torch.no_grad()
def capture_attention_outputs(model: nn.Module, batches, max_tokens: int = 20_000) -> list:
    """Per layer, the self-attention output (the attention output projection's output, before any
    adapter) for every non-padding token of ``batches``: a list of (tokens, hidden) float64 arrays."""
    spec = architecture_of(model)
    layers = encoder_layers(model)
    captured = [[] for _ in layers]
    hooks = []
    for i, layer in enumerate(layers):
        projection = layer.get_submodule(spec.projection)
        target = getattr(projection, "linear", projection)  # before the adapter, if there is one
        hooks.append(target.register_forward_hook(lambda m, inp, out, i=i: captured[i].append(out.detach())))
    model.eval()
    device = model_device(model)
    try:
        seen = 0
        for batch in batches:
            batch = to_device(batch, device)  # CPU batches, a model that may sit on a GPU
            mask = batch["attention_mask"].bool()
            start = [len(c) for c in captured]
            model(**batch)
            for i, c in enumerate(captured):  # keep real tokens only (ALBERT's shared layer runs many times)
                c[start[i]:] = [x[mask] for x in c[start[i]:]]
            seen += int(mask.sum())
            if seen >= max_tokens:
                break
    finally:
        for hook in hooks:
            hook.remove()
    return [torch.cat(c)[:max_tokens].double().cpu().numpy() for c in captured]


def _r2(target: np.ndarray, prediction: np.ndarray) -> float:
    residual = ((target - prediction) ** 2).sum()
    total = ((target - target.mean(0)) ** 2).sum()
    return float(1 - residual / total)


def fit_attention_maps(before: np.ndarray, after: np.ndarray, holdout: float = 0.5) -> dict:
    """How well maps of ``before`` (pre-trained attention outputs, tokens x hidden) predict the
    fine-tuned ones, as R² on held-out tokens. The maps, fitted on the first ``1 - holdout`` of the
    tokens and scored on the rest (tokens come in sentence order, so the two parts are different
    sentences but for the one at the split):

    - ``identity``: after = before (nothing fitted): the baseline every map must beat;
    - ``elementwise``: after_j = w_j * before_j + b_j (the Hadamard adapter's form);
    - ``quadratic``: after_j = a_j * before_j² + w_j * before_j + b_j, still per dimension;
    - ``linear``: after = before @ M + c, a full hidden x hidden map (``linear_params`` numbers).

    Top-level keys score the fine-tuned outputs themselves; ``change`` holds the same maps scored on
    the change (after - before), where the identity predicts no change, so its R² is at most 0. An
    output R² near 1 can hide a map that explains little of what fine-tuning did; the change cannot.
    """
    n = len(before)
    split = int(n * (1 - holdout))
    x, y, xt, yt = before[:split], after[:split], before[split:], after[split:]

    def per_dimension(features):
        prediction = np.empty_like(yt)
        for j in range(y.shape[1]):
            coef, *_ = np.linalg.lstsq(features(x[:, j]), y[:, j], rcond=None)
            prediction[:, j] = features(xt[:, j]) @ coef
        return prediction

    linear_features = lambda v: np.stack([v, np.ones_like(v)], 1)
    quadratic_features = lambda v: np.stack([v * v, v, np.ones_like(v)], 1)
    coef, *_ = np.linalg.lstsq(np.hstack([x, np.ones((len(x), 1))]), y, rcond=None)
    predictions = {"identity": xt, "elementwise": per_dimension(linear_features),
                   "quadratic": per_dimension(quadratic_features),
                   "linear": np.hstack([xt, np.ones((len(xt), 1))]) @ coef}
    out = {name: _r2(yt, p) for name, p in predictions.items()}
    # Every map predicts after; after - before is then predicted by prediction - before.
    out["change"] = {name: _r2(yt - xt, p - xt) for name, p in predictions.items()}
    norm_before, norm_after = np.linalg.norm(before, axis=1), np.linalg.norm(after, axis=1)
    out.update({"norm_before": float(norm_before.mean()), "norm_after": float(norm_after.mean()),
                # mean size of the change over mean size of the output (notebook 06's measure): a ratio of
                # means, so a few tokens with tiny outputs cannot dominate it
                "relative_change": float(np.linalg.norm(after - before, axis=1).mean() / norm_before.mean()),
                "linear_params": int(coef.size), "fit_tokens": int(split), "test_tokens": int(n - split)})
    return out


# ---------------------------------------------------------------- pruning and sharing

@torch.no_grad()
def prune_layers(model: nn.Module, pretrained: nn.Module, keep) -> nn.Module:
    """Keep the adapters of the layers in ``keep``; take the others out and give their
    post-attention LayerNorms back their pre-trained values, so those layers are untouched."""
    from .adapter import _parent_and_name, HadamardLinear

    spec = architecture_of(model)
    layers = encoder_layers(model)
    keep = set(keep)
    for i in hadamard_adapters(model):
        if i in keep:
            continue
        post_attention_layer_norms(model, [i])[i].load_state_dict(post_attention_layer_norms(pretrained, [i])[i].state_dict())
        parent, name = _parent_and_name(layers[i], spec.projection)
        wrapped = getattr(parent, name)
        assert isinstance(wrapped, HadamardLinear)
        setattr(parent, name, wrapped.linear)
    return model


def share_adapters(models: dict, layers) -> dict:
    """Make the task models use one adapter and one post-attention LayerNorm for each layer in
    ``layers`` (the first task's), so training any task trains the shared ones; the other layers
    stay task-specific. All models must have adapters on those layers. The shared modules are one
    object: ``remove_hadamard_adapter`` on one of the models resets the LayerNorm the others use too,
    so save each task (``save_adapter``) before removing anything."""
    from .adapter import _parent_and_name

    first = next(iter(models.values()))
    spec = architecture_of(first)
    for model in list(models.values())[1:]:
        for i in layers:
            source, target = encoder_layers(first)[i], encoder_layers(model)[i]
            target.get_submodule(spec.projection).hadamard = source.get_submodule(spec.projection).hadamard
            parent, name = _parent_and_name(target, spec.layer_norm)
            setattr(parent, name, source.get_submodule(spec.layer_norm))
    return models


def train_multitask(models: dict, tokenizer, train: dict, dev: dict, epochs: int = 2, lr: float = 1e-2,
                    batch_size: int = 32, seed: int = 0, progress: bool = True, device: str = "auto") -> dict:
    """Train several task models together, one batch of a task at a time in a seeded random
    order, with one optimizer over their (possibly shared) trainable parameters.

    ``models``, ``train`` and ``dev`` map task names to models and ``GlueSplit`` objects. The models
    move to ``device`` ("auto": CUDA, then Apple MPS, then the CPU), and every batch with them.
    Returns every task's dev score (main metric) after the last epoch, the share of dev examples
    given the commonest predicted class per classification task (1.0: the model collapsed to one
    answer), and the trainable-parameter count overall. No epoch is chosen on the dev set that is reported.
    """
    import random

    from tqdm.auto import tqdm

    from .data import batches
    from .metrics import glue_metrics
    from .trainer import lr_at, pick_device

    target = pick_device(device)
    for model in models.values():  # before the optimizer sees the parameters; shared modules move once
        model.to(target)
    params = {id(p): p for m in models.values() for p in m.parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(params.values(), lr=lr, weight_decay=0.0)
    torch.manual_seed(seed)
    schedule = [(t, b) for e in range(epochs) for t in train
                for b in batches(train[t], tokenizer, batch_size, shuffle=True, seed=seed, epoch=e)]
    order = list(range(len(schedule)))
    random.Random(seed).shuffle(order)
    for step, k in enumerate(tqdm(order, desc="multi-task", disable=not progress, leave=False)):
        task, batch = schedule[k]
        model = models[task].train()
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, len(order), max(1, len(order) // 16), lr)
        model(**to_device(batch, target), labels=batch["labels"].to(target)).loss.backward()
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    scores, commonest = {}, {}
    for t, m in models.items():
        answers = predictions(m, tokenizer, dev[t])
        scores[t] = next(iter(glue_metrics(dev[t].task.name, answers, dev[t].labels).values()))
        if not dev[t].task.is_regression:  # 1.0: one class whatever the input, a score no better than a constant's
            commonest[t] = max(answers.count(c) for c in set(answers)) / len(answers)
    return {"scores": scores, "commonest_prediction": commonest, "trainable": sum(p.numel() for p in params.values())}
