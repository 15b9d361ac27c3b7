"""Check functions for the notebook exercises: each says whether an answer is right, and why not.

They print a short verdict and return True or False, so a teacher can collect them as an
assignment's score. The student writes a *function*, and the check runs it on fresh random cases
(new sizes and values on every call) against what ``hadamard_lite`` computes, so no number copied
from a printout passes. A stub that raises ``NotImplementedError`` ("not done yet") is let through
unchanged, so a student version stops with that message; any other error is reported as a wrong answer.
"""
import random

import torch

from .counting import method_parameter_counts


def _verdict(ok: bool, hint: str) -> bool:
    print("Correct!" if ok else f"Not yet. {hint}")
    return ok


def _call(fn, *args, **kwargs):
    """``(result, None)``, or ``(None, "what went wrong")`` when the student's function fails."""
    if not callable(fn):
        return None, f"pass a function, not {type(fn).__name__} {fn!r}: the check calls it on new random cases"
    try:
        return fn(*args, **kwargs), None
    except NotImplementedError:
        raise  # a student-version stub: keep its "not done yet" message
    except Exception as error:  # noqa: BLE001 - any failure of the student's code is a wrong answer
        return None, f"your function raised {type(error).__name__}: {error}"


def _is_int(value, expected: int) -> bool:
    try:
        return float(value) == expected
    except (TypeError, ValueError):
        return False


def _rng() -> random.Random:
    return random.Random()  # fresh cases on every call: seeded from the operating system


def _bert_config(r: random.Random, num_labels: int = 2):
    """A small random BERT config (the counts only need its sizes)."""
    from transformers import AutoConfig

    heads = r.choice([1, 2, 4])
    return AutoConfig.for_model("bert", hidden_size=heads * r.choice([4, 8, 12, 16]), num_attention_heads=heads,
                                num_hidden_layers=r.randint(2, 7), intermediate_size=r.choice([20, 36, 64, 100]),
                                vocab_size=r.randint(50, 200), max_position_embeddings=r.choice([32, 64]),
                                num_labels=num_labels)


def check_head_parameters(head_fn) -> bool:
    """Notebook 01: ``head_fn(hidden_size, num_labels) -> int``, the parameters of a linear
    classifier head (weights and biases), checked against ``nn.Linear`` on random sizes."""
    r = _rng()
    for _ in range(5):
        hidden, labels = r.randint(2, 1024), r.randint(1, 10)
        expected = sum(p.numel() for p in torch.nn.Linear(hidden, labels, device="meta").parameters())
        answer, error = _call(head_fn, hidden, labels)
        if error or not _is_int(answer, expected):
            return _verdict(False, error or f"For hidden_size={hidden}, num_labels={labels} your function gave "
                            f"{answer}. The head maps hidden_size features to num_labels logits: count the weight "
                            "matrix and the bias.")
    return _verdict(True, "")


def check_adapter_gradients(grad_fn) -> bool:
    """Notebook 02: ``grad_fn(a, upstream) -> (dW, db)`` for ``y = a * W + b`` summed over tokens,
    where ``a`` and ``upstream`` (dL/dy) have shape (batch, tokens, hidden)."""
    r = _rng()
    g = torch.Generator().manual_seed(r.randrange(2**31))
    for _ in range(3):
        shape = (r.randint(1, 4), r.randint(1, 7), r.randint(2, 9))
        a, upstream = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        weight = torch.randn(shape[-1], generator=g).requires_grad_()  # any W: the formulas do not depend on it
        bias = torch.zeros(shape[-1], requires_grad=True)
        (a * weight + bias).backward(upstream)
        answer, error = _call(grad_fn, a.clone(), upstream.clone())
        ok = False
        if error is None:
            try:
                dw, db = (torch.as_tensor(x, dtype=torch.float32) for x in answer)
                ok = (dw.shape == weight.shape and db.shape == bias.shape and torch.allclose(dw, weight.grad, atol=1e-4)
                      and torch.allclose(db, bias.grad, atol=1e-4))
            except (TypeError, ValueError, RuntimeError) as e:
                error = f"could not read (dW, db) from your answer: {e}"
        if not ok:
            return _verdict(False, error or f"For a of shape {shape}, (dW, db) differ from autograd's. W and b are "
                            "shared by every token and batch item, so their gradients sum over those two dimensions "
                            "(shape (hidden,)); dW also carries the factor a.")
    return _verdict(True, "")


def check_merge(merge_fn) -> bool:
    """Notebook 02: ``merge_fn(linear, W, b) -> (weight, bias)`` of one Linear equal to
    ``linear(W * x + b)``: an adapter *before* a linear layer (as IA3 scales a layer's input),
    folded into it. Notebook 02 shows the other order; this one the student derives."""
    r = _rng()
    g = torch.Generator().manual_seed(r.randrange(2**31))
    for _ in range(3):
        n_in, n_out = r.randint(2, 9), r.randint(2, 9)
        linear = torch.nn.Linear(n_in, n_out)
        w, b, x = torch.randn(n_in, generator=g), torch.randn(n_in, generator=g), torch.randn(4, n_in, generator=g)
        with torch.no_grad():
            expected = linear(x * w + b)
            answer, error = _call(merge_fn, linear, w.clone(), b.clone())
            ok = False
            if error is None:
                try:
                    weight, bias = (torch.as_tensor(t) for t in answer)
                    ok = weight.shape == (n_out, n_in) and torch.allclose(x @ weight.T + bias, expected, atol=1e-5)
                except (TypeError, ValueError, RuntimeError) as e:
                    error = f"could not use (weight, bias) from your answer: {e}"
        if not ok:
            return _verdict(False, error or f"For a Linear({n_in}, {n_out}) the merged layer's output differs. "
                            "W scales the layer's inputs, so it scales the weight's columns; the shift b passes "
                            "through the weight and adds to the bias.")
    return _verdict(True, "")


def check_trainable_count(count_fn) -> bool:
    """Notebook 03: ``count_fn(config, layers, train_head) -> int``: the parameters that train in
    stage 2 with adapters on ``layers`` (adapters, post-attention LayerNorms, and the classifier
    head when ``train_head``), checked against ``add_hadamard_adapter`` + ``freeze_for_stage`` on
    random BERT configs (``config.hidden_size``, ``config.num_labels``, ``config.num_hidden_layers``)."""
    from .adapter import add_hadamard_adapter
    from .freezing import count_parameters, freeze_for_stage
    from .models import model_from_config

    r = _rng()
    for train_head in (True, False, r.random() < 0.5):
        config = _bert_config(r, num_labels=r.randint(1, 5))
        layers = sorted(r.sample(range(config.num_hidden_layers), r.randint(1, config.num_hidden_layers)))
        model = model_from_config(config, num_labels=config.num_labels)
        add_hadamard_adapter(model, layers)
        expected = count_parameters(freeze_for_stage(model, "adapter", train_head=train_head))[0]
        answer, error = _call(count_fn, config, list(layers), train_head)
        if error or not _is_int(answer, expected):
            return _verdict(False, error or f"For hidden_size={config.hidden_size}, num_labels={config.num_labels}, "
                            f"layers={layers}, train_head={train_head} your function gave {answer}. Each adapted layer "
                            "trains W and b of the adapter and the LayerNorm's weight and bias (four vectors of the "
                            "hidden size); the head (a Linear from hidden_size to num_labels) trains only if train_head.")
    return _verdict(True, "")


METHOD_OPTIONS = {"hadamard": "layers", "lora": "r"}  # the methods whose count takes a second argument


def check_method_count(count_fn, method: str) -> bool:
    """Notebook 04: trainable parameters of ``method`` (head excluded), checked against
    ``counting.method_parameter_counts`` on random BERT configs. ``count_fn(config, layers)`` for
    "hadamard" (adapters + post-attention LayerNorms on those layers), ``count_fn(config, r)`` for
    "lora" (rank r on query and value), ``count_fn(config)`` for the others."""
    r = _rng()
    for _ in range(4):
        config = _bert_config(r)
        option = METHOD_OPTIONS.get(method)
        args, kwargs = (config,), {}
        if option == "layers":
            layers = sorted(r.sample(range(config.num_hidden_layers), r.randint(1, config.num_hidden_layers)))
            args, kwargs = (config, layers), {"hadamard_layers": layers}
        elif option == "r":
            rank = r.choice([1, 2, 4, 8, 16])
            args, kwargs = (config, rank), {"lora_rank": rank}
        counts = method_parameter_counts(config, **kwargs)
        if method not in counts:
            raise ValueError(f"unknown method {method!r}; choose from {', '.join(counts)}")
        answer, error = _call(count_fn, *args)
        if error or not _is_int(answer, counts[method]):
            case = ", ".join(f"{k}={getattr(config, k)}" for k in ("num_hidden_layers", "hidden_size", "intermediate_size"))
            extra = f", {option}={args[1]}" if option else ""
            return _verdict(False, error or f"For {case}{extra} your function gave {answer}. Write {method}'s count as "
                            "a formula of the layers, hidden size and feed-forward size; which matrices or vectors "
                            "does it add in each layer?")
    return _verdict(True, "")


def check_r2(r2_fn) -> bool:
    """Notebook 06: ``r2_fn(target, prediction) -> float``, the coefficient of determination
    over all entries of (tokens, hidden) arrays, with the mean taken per hidden dimension."""
    import numpy as np

    r = np.random.default_rng(_rng().randrange(2**31))
    for _ in range(3):
        tokens, hidden = r.integers(20, 80), r.integers(2, 9)
        # columns with their own means and very different spreads, so the usual mistakes show
        target = r.normal(size=(tokens, hidden)) * r.uniform(0.1, 5, size=hidden) + r.normal(scale=3, size=hidden)
        prediction = target + r.normal(scale=r.uniform(0.2, 2), size=target.shape)
        expected = 1 - ((target - prediction) ** 2).sum() / ((target - target.mean(0)) ** 2).sum()
        answer, error = _call(r2_fn, target.copy(), prediction.copy())
        try:
            ok = error is None and abs(float(answer) - expected) < 1e-9
        except (TypeError, ValueError):
            ok, error = False, f"your function returned {answer!r}, not a number"
        if not ok:
            return _verdict(False, error or "R² = 1 - (sum of squared residuals) / (sum of squared deviations from "
                            "each column's mean), both summed over all entries: not one mean over everything, not an "
                            "average of per-column R².")
    return _verdict(True, "")


def check_cosine_of_changes(cos_fn) -> bool:
    """Notebook 05: ``cos_fn(w1, w2) -> float``, the cosine similarity of two adapters' changes
    from the identity (W - 1), as cross-task similarity uses; ``w1``, ``w2`` are 1-D tensors."""
    r = _rng()
    g = torch.Generator().manual_seed(r.randrange(2**31))
    for _ in range(3):
        d = r.randint(3, 12)
        # Changes with a common offset, as trained adapters have: then the cosine of raw W (near 1),
        # the correlation of raw W (centred by W's own mean) and the cosine of W - 1 all differ.
        w1 = 1 + r.uniform(0.2, 0.5) + 0.2 * torch.randn(d, generator=g)
        w2 = 1 - r.uniform(0.1, 0.5) + 0.3 * torch.randn(d, generator=g)
        expected = float(torch.dot(w1 - 1, w2 - 1) / ((w1 - 1).norm() * (w2 - 1).norm()))
        answer, error = _call(cos_fn, w1.clone(), w2.clone())
        try:
            ok = error is None and abs(float(answer) - expected) < 1e-5
        except (TypeError, ValueError, RuntimeError):
            ok, error = False, f"your function returned {answer!r}, not a number"
        if not ok:
            return _verdict(False, error or "Subtract 1 from both weight vectors first (an untrained adapter, all "
                            "ones, means 'no change'), then divide their dot product by both norms; do not centre "
                            "by the vectors' own means.")
    return _verdict(True, "")
