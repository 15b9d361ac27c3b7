"""Check functions for the notebook exercises: each says whether an answer is right, and why not.

They print a short verdict and return True or False, so a teacher can collect them as an
assignment's score. The answers they compare against are computed, never stored.
"""
import torch

from .counting import hadamard_parameter_count, method_parameter_counts
from .models import published_config


def _verdict(ok: bool, hint: str) -> bool:
    print("Correct!" if ok else f"Not yet. {hint}")
    return ok


def check_head_parameters(answer: int, hidden_size: int = 384, num_labels: int = 2) -> bool:
    """Notebook 01: parameters of a linear classifier head (weights and biases)."""
    return _verdict(answer == hidden_size * num_labels + num_labels,
                    f"The head maps {hidden_size} features to {num_labels} logits: count the weight matrix and the bias.")


def check_adapter_gradients(grad_fn) -> bool:
    """Notebook 02: ``grad_fn(a, upstream) -> (dW, db)`` for ``y = a * W + b`` summed over tokens,
    where ``a`` and ``upstream`` (dL/dy) have shape (batch, tokens, hidden)."""
    g = torch.Generator().manual_seed(0)
    a, upstream = torch.randn(2, 5, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    weight, bias = torch.ones(8, requires_grad=True), torch.zeros(8, requires_grad=True)
    (a * weight + bias).backward(upstream)
    dw, db = grad_fn(a, upstream)
    ok = torch.allclose(torch.as_tensor(dw), weight.grad, atol=1e-5) and torch.allclose(torch.as_tensor(db), bias.grad, atol=1e-5)
    return _verdict(ok, "W and b are shared by every token and batch item, so their gradients sum over those "
                        "two dimensions; dW also carries the factor a.")


def check_merge(merge_fn) -> bool:
    """Notebook 02: ``merge_fn(linear, W, b) -> (weight, bias)`` of one Linear equal to adapter(linear(x))."""
    g = torch.Generator().manual_seed(1)
    linear = torch.nn.Linear(6, 6)
    w, b, x = torch.randn(6, generator=g), torch.randn(6, generator=g), torch.randn(3, 6, generator=g)
    weight, bias = merge_fn(linear, w, b)
    with torch.no_grad():
        ok = torch.allclose(x @ torch.as_tensor(weight).T + torch.as_tensor(bias), linear(x) * w + b, atol=1e-5)
    return _verdict(ok, "Scale each output row of the weight by W, and pass the bias through the adapter too.")


def check_trainable_count(answer: int, model_name: str, layers=None) -> bool:
    """Notebooks 03 and 04: Hadamard adapter plus post-attention LayerNorm parameters."""
    expected, _ = hadamard_parameter_count(model_name, layers)
    return _verdict(answer == expected, "Each adapted layer trains W and b of the adapter and the LayerNorm's "
                                        "weight and bias: four vectors of the hidden size.")


def check_method_count(answer: int, method: str, model_name: str = "bert-base-uncased") -> bool:
    """Notebook 04: trainable parameters of ``method`` on a published model (head excluded)."""
    expected = method_parameter_counts(published_config(model_name))[method]
    return _verdict(answer == expected, f"Write {method}'s count as a formula of layers, hidden size and "
                                        "feed-forward size, then plug in the config's numbers.")


def check_r2(r2_fn) -> bool:
    """Notebook 06: ``r2_fn(target, prediction) -> float``, the coefficient of determination
    over all entries of (tokens, hidden) arrays, with the mean taken per hidden dimension."""
    import numpy as np

    r = np.random.default_rng(0)
    target = r.normal(size=(50, 4)) + np.arange(4)
    prediction = target + r.normal(scale=0.5, size=target.shape)
    expected = 1 - ((target - prediction) ** 2).sum() / ((target - target.mean(0)) ** 2).sum()
    return _verdict(abs(float(r2_fn(target, prediction)) - expected) < 1e-9,
                    "R² = 1 - (sum of squared residuals) / (sum of squared deviations from each column's mean).")


def check_cosine_of_changes(cos_fn) -> bool:
    """Notebook 05: ``cos_fn(w1, w2) -> float``, the cosine similarity of two adapters' changes
    from the identity (W - 1), as cross-task similarity uses."""
    a, b = torch.tensor([1.5, 1.0, 0.5]), torch.tensor([2.0, 1.0, 0.0])
    ok = abs(float(cos_fn(a, b)) - 1.0) < 1e-6 and abs(float(cos_fn(a, torch.tensor([0.5, 1.0, 1.5]))) + 1.0) < 1e-6
    return _verdict(ok, "Subtract 1 from both weight vectors first: an untrained adapter (all ones) means 'no change'.")


def check_per_example_adapter(adapter_fn) -> bool:
    """Notebook 07: ``adapter_fn(x, weights, biases, index) -> y`` where ``x`` is (batch, tokens,
    hidden), ``weights`` and ``biases`` are (tasks, hidden) tables and ``index`` (batch,) names
    each example's task; example i must get ``x[i] * weights[index[i]] + biases[index[i]]``."""
    g = torch.Generator().manual_seed(2)
    x, weights, biases = torch.randn(5, 4, 6, generator=g), torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    index = torch.tensor([2, 0, 2, 1, 0])
    expected = torch.stack([x[i] * weights[t] + biases[t] for i, t in enumerate(index.tolist())])
    y = torch.as_tensor(adapter_fn(x, weights, biases, index))
    ok = y.shape == expected.shape and torch.allclose(y, expected, atol=1e-6)
    return _verdict(ok, "Gather one row per example (weights[index] has shape (batch, hidden)), then add a token "
                        "dimension so it broadcasts over the tokens: shape (batch, 1, hidden).")
