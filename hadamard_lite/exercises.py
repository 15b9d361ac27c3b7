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


# ------------------------------------------------------------------ notebook 08: build it yourself
# These checks take the student's class or function, run it on fresh random cases (sizes, values and
# a tiny random BERT drawn anew on every call) and compare it with hadamard_lite's own code, so no
# stored answer can pass. Each failure names what is off. A NotImplementedError (the student version's
# "not done yet" stub) passes through unchanged, so it says which exercise to write.
import copy
import functools
import math
import os
import random

from torch import nn


class _Off(Exception):
    """Raised inside a check when the answer is wrong; the message is the hint."""


def _expect(ok: bool, hint: str) -> None:
    if not ok:
        raise _Off(hint)


def _checked(check):
    """Run ``check``; turn a failed expectation or an error in the student's code into a verdict."""
    @functools.wraps(check)
    def wrapper(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # tiny tensors: threads cost more than they give, a lot on a busy machine
        try:
            check(*args, **kwargs)
        except _Off as off:
            return _verdict(False, str(off))
        except NotImplementedError:
            raise  # a student-version stub: its message says which exercise is not done yet
        except Exception as error:  # the student's code crashed: say so in one line
            return _verdict(False, f"Your code raised {type(error).__name__}: {error}")
        finally:
            torch.set_num_threads(threads)
        return _verdict(True, "")
    return wrapper


def _fresh_seed() -> int:
    return int.from_bytes(os.urandom(4), "little")


def _names(names, most: int = 4) -> str:
    names = sorted(names)
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _tiny_bert(seed: int):
    """A small random BertForSequenceClassification (2-5 layers), dropout off so runs compare exactly."""
    from transformers import BertConfig, BertForSequenceClassification

    r = random.Random(seed)
    heads = r.choice([2, 4])
    hidden = heads * r.choice([3, 4, 6])
    config = BertConfig(vocab_size=50, hidden_size=hidden, num_hidden_layers=r.randint(2, 5),
                        num_attention_heads=heads, intermediate_size=2 * hidden + r.randint(1, 5),
                        max_position_embeddings=32, num_labels=r.choice([2, 3]),
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    with torch.random.fork_rng():  # leave the caller's random state alone
        torch.manual_seed(seed)
        return BertForSequenceClassification(config).eval()


def _tiny_batches(model, seed: int, count: int = 3) -> list:
    """``count`` batches of random tokens and labels, one of them with padding."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(count):
        length = 5 + i
        ids = torch.randint(1, model.config.vocab_size, (4, length), generator=g)
        mask = torch.ones_like(ids)
        mask[0, length - 2:] = 0
        labels = torch.randint(0, model.config.num_labels, (4,), generator=g)
        out.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
    return out


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def _trainable(model) -> set:
    return {n for n, p in model.named_parameters() if p.requires_grad}


@_checked
def check_hadamard_adapter(adapter_cls):
    """Exercise 1: ``adapter_cls(hidden_size)`` is an ``nn.Module`` with parameters ``weight`` (ones)
    and ``bias`` (zeros) of shape (hidden_size,) whose forward is ``x * weight + bias``."""
    from .adapter import HadamardAdapter

    seed = _fresh_seed()
    g = torch.Generator().manual_seed(seed)
    d = 3 + seed % 13
    adapter = adapter_cls(d)
    params = dict(adapter.named_parameters())
    _expect(set(params) == {"weight", "bias"},
            f"The adapter needs exactly two nn.Parameter attributes, weight and bias (found parameters: "
            f"{sorted(params) or 'none'}). Wrap the tensors in nn.Parameter so that they train.")
    for name in ("weight", "bias"):
        _expect(tuple(params[name].shape) == (d,),
                f"{name} must be a vector of the hidden size: HadamardAdapter({d}).{name} should have shape "
                f"({d},), not {tuple(params[name].shape)}. The adapter has 2 x d numbers, not a d x d matrix.")
    w, b = params["weight"].detach(), params["bias"].detach()
    _expect(not torch.all(w == 0), "weight starts at 0, so the adapter erases the attention output. Start it at "
                                   "ones (torch.ones): then W * x = x and the adapter is the identity.")
    _expect(torch.all(w == 1), "weight must start at exactly 1 (torch.ones) so that the adapter starts as the identity.")
    _expect(not torch.all(b == 1), "bias starts at 1, which shifts every output by 1. Start it at zeros (torch.zeros).")
    _expect(torch.all(b == 0), "bias must start at exactly 0 (torch.zeros) so that the adapter starts as the identity.")
    x = torch.randn(2, 5, d, generator=g)
    _expect(torch.equal(adapter(x), x), "A fresh adapter must return its input unchanged (W = 1, b = 0 is the identity).")

    weight, bias = torch.randn(d, generator=g), torch.randn(d, generator=g)
    with torch.no_grad():
        adapter.weight.copy_(weight)
        adapter.bias.copy_(bias)
    for shape in [(2, 5, d), (7, d)]:  # (batch, tokens, hidden) and (tokens, hidden)
        x = torch.randn(*shape, generator=g)
        out = adapter(x)
        _expect(tuple(out.shape) == shape, f"The output must have the input's shape {shape}, got {tuple(out.shape)}.")
        _expect(torch.allclose(out, x * weight + bias, atol=1e-6),
                "With trained values the output must be x * weight + bias, element by element over the last "
                "dimension (broadcast over batch and tokens).")

    x = torch.randn(3, 4, d, generator=g, requires_grad=True)
    upstream = torch.randn(3, 4, d, generator=g)
    adapter.zero_grad()
    adapter(x).backward(upstream)
    _expect(adapter.weight.grad is not None and adapter.bias.grad is not None,
            "No gradient reached weight or bias: use them in forward as parameters (no .detach(), no .data).")
    _expect(x.grad is not None and torch.allclose(x.grad, upstream * weight, atol=1e-5),
            "The gradient must flow on to the input (dL/dx = g * W): do not detach x.")
    _expect(torch.allclose(adapter.weight.grad, (upstream * x).sum((0, 1)), atol=1e-4)
            and torch.allclose(adapter.bias.grad, upstream.sum((0, 1)), atol=1e-4),
            "The gradients of weight and bias are not those of x * weight + bias.")

    ours = HadamardAdapter(d)
    ours.load_state_dict(adapter.state_dict())
    x = torch.randn(2, 3, d, generator=g)
    _expect(torch.allclose(adapter(x), ours(x), atol=1e-6), "Your adapter and hadamard_lite's disagree on the same values.")


@_checked
def check_hadamard_linear(linear_cls):
    """Exercise 2: ``linear_cls(linear)`` keeps ``linear`` as ``.linear``, adds a Hadamard adapter of
    ``linear.out_features`` as ``.hadamard`` (on the linear's device and dtype), and computes
    ``hadamard(linear(x))``."""
    from .adapter import HadamardLinear

    seed = _fresh_seed()
    g = torch.Generator().manual_seed(seed)
    n_in = 4 + seed % 7
    n_out = n_in + 1 + (seed >> 8) % 5  # differs from n_in, so the adapter's size tells where it sits
    linear = nn.Linear(n_in, n_out)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(n_out, n_in, generator=g))
        linear.bias.copy_(torch.randn(n_out, generator=g))
    original = {k: v.clone() for k, v in linear.state_dict().items()}
    wrapped = linear_cls(linear)
    _expect(getattr(wrapped, "linear", None) is linear,
            "Keep the very nn.Linear you were given as .linear (do not copy or rebuild it): the pre-trained "
            "weights must stay the same tensors.")
    _expect(isinstance(getattr(wrapped, "hadamard", None), nn.Module),
            "Put the adapter in an attribute named .hadamard (a HadamardAdapter), as hadamard_lite does.")
    names = {n for n, _ in wrapped.named_parameters()}
    expected = {"linear.weight", "linear.bias", "hadamard.weight", "hadamard.bias"}
    _expect(names == expected, f"The parameters should be named {_names(expected)}; found {_names(names)}.")
    shape = tuple(wrapped.hadamard.weight.shape)
    _expect(shape != (n_in,), f"The adapter has the linear layer's input size ({n_in}); it acts on the output "
                              f"of the projection, so its size is linear.out_features ({n_out}).")
    _expect(shape == (n_out,), f"The adapter should have linear.out_features = {n_out} numbers, not shape {shape}.")
    _expect(all(torch.equal(v, linear.state_dict()[k]) for k, v in original.items()),
            "Wrapping changed the linear layer's weights: leave them as they are.")

    x = torch.randn(3, 2, n_in, generator=g)
    with torch.no_grad():
        _expect(torch.equal(wrapped(x), linear(x)),
                "A fresh HadamardLinear must give exactly linear(x), the projection with its bias: the adapter "
                "starts as the identity.")
        wrapped.hadamard.weight.copy_(torch.randn(n_out, generator=g))
        wrapped.hadamard.bias.copy_(torch.randn(n_out, generator=g))
        expected_out = linear(x) * wrapped.hadamard.weight + wrapped.hadamard.bias
        _expect(torch.allclose(wrapped(x), expected_out, atol=1e-5),
                "The output must be hadamard(linear(x)): first the projection (with its bias), then the adapter.")

    # Square projections, as in BERT: an adapter applied before the projection has the right size but
    # gives other outputs. Compare with hadamard_lite on the same values.
    square = nn.Linear(n_out, n_out)
    mine, ours = linear_cls(square), HadamardLinear(square)
    with torch.no_grad():
        for p in (ours.hadamard.weight, ours.hadamard.bias):
            p.copy_(torch.randn(n_out, generator=g))
        mine.hadamard.load_state_dict(ours.hadamard.state_dict())
    x = torch.randn(4, n_out, generator=g)
    with torch.no_grad():
        _expect(torch.allclose(mine(x), ours(x), atol=1e-5),
                "On a square projection your output differs from hadamard_lite's: apply the adapter after the "
                "projection, hadamard(linear(x)), not linear(hadamard(x)).")

    # Gradients: a frozen projection gets none, the adapter and the input do.
    square.requires_grad_(False)
    x = torch.randn(2, 3, n_out, generator=g, requires_grad=True)
    mine(x).sum().backward()
    _expect(square.weight.grad is None, "The frozen projection received a gradient.")
    _expect(mine.hadamard.weight.grad is not None and mine.hadamard.bias.grad is not None,
            "The adapter received no gradient: call it in forward.")
    _expect(x.grad is not None, "No gradient reached the input: do not detach inside forward.")

    # Device and dtype follow the wrapped layer, or a model on a GPU would get an adapter on the CPU.
    for kwargs in ({"dtype": torch.float64}, {"device": "meta"}):
        other = nn.Linear(n_in, n_out, **kwargs)
        adapter_weight = linear_cls(other).hadamard.weight
        _expect(adapter_weight.device == other.weight.device and adapter_weight.dtype == other.weight.dtype,
                f"For a linear layer with {kwargs} the adapter was made on {adapter_weight.device} in "
                f"{adapter_weight.dtype}. Create it where the layer lives: "
                ".to(linear.weight.device, linear.weight.dtype).")


@_checked
def check_injection(add_fn):
    """Exercise 3: ``add_fn(model)`` wraps ``attention.output.dense`` of every layer of a BERT model in
    a HadamardLinear, in place."""
    from .adapter import add_hadamard_adapter

    seed = _fresh_seed()
    model = _tiny_bert(seed)
    reference = copy.deepcopy(model)
    layers = list(model.bert.encoder.layer)
    projections = [layer.attention.output.dense for layer in layers]
    batch = _tiny_batches(model, seed + 1, count=1)[0]
    before = _logits(model, batch)
    returned = add_fn(model)
    _expect(returned is None or returned is model,
            "Change the model in place (and return it, or nothing), do not build a new one.")

    adapted = [i for i, layer in enumerate(model.bert.encoder.layer)
               if hasattr(layer.attention.output.dense, "hadamard")]
    names = {n for n, _ in model.named_parameters()}
    adapter_names = {n for n in names if "hadamard" in n}
    elsewhere = {n.rsplit(".hadamard", 1)[0] for n in adapter_names if ".attention.output.dense.hadamard" not in n}
    _expect(not elsewhere, f"Adapters found at {_names(elsewhere)}: the adapter belongs on the attention output "
                           "projection, layer.attention.output.dense.")
    _expect(adapted, "No layer's attention.output.dense has a .hadamard adapter: replace each one by your "
                     "HadamardLinear (setattr on layer.attention.output).")
    _expect(len(adapted) == len(layers),
            f"Only {len(adapted)} of this model's {len(layers)} layers got an adapter: loop over every layer in "
            "model.bert.encoder.layer (do not hard-code the number of layers).")
    _expect(all(layer.attention.output.dense.linear is projection
                for layer, projection in zip(model.bert.encoder.layer, projections)),
            "Each HadamardLinear must hold that layer's own original dense layer as .linear.")

    add_hadamard_adapter(reference)
    expected = {n for n, _ in reference.named_parameters()}
    _expect(names == expected, f"The parameter names differ from hadamard_lite's: missing {_names(expected - names)}; "
                               f"unexpected {_names(names - expected)}.")
    _expect(torch.allclose(_logits(model, batch), before, atol=1e-6),
            "Right after injection the model must give the same logits as before (adapters start as the identity).")

    g = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        mine = dict(model.named_parameters())
        for name, p in reference.named_parameters():
            if "hadamard" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5 + (1.0 if name.endswith("weight") else 0.0))
                mine[name].copy_(p)
    _expect(torch.allclose(_logits(model, batch), _logits(reference, batch), atol=1e-5),
            "With the same adapter values your model's logits differ from hadamard_lite's: the adapter must act "
            "on the output of attention.output.dense, before the residual add and the LayerNorm.")


@_checked
def check_freezing(set_trainable):
    """Exercise 4: ``set_trainable(model, stage, train_head=False)`` sets ``requires_grad`` by parameter
    name: stage "head" trains the classifier only; stage "adapter" the adapters and the post-attention
    LayerNorms (and the classifier if ``train_head``)."""
    from .adapter import add_hadamard_adapter
    from .freezing import freeze_for_stage

    seed = _fresh_seed()
    model = _tiny_bert(seed)
    add_hadamard_adapter(model)
    everything = {n for n, _ in model.named_parameters()}
    calls = [("adapter", False), ("head", False), ("adapter", True), ("head", False), ("adapter", False)]
    random.Random(seed).shuffle(calls)
    for stage, train_head in calls:
        call = f"set_trainable(model, {stage!r}, train_head={train_head})"
        reference = copy.deepcopy(model)
        freeze_for_stage(reference, stage, train_head=train_head)
        want = _trainable(reference)
        # The same call on a model with everything trainable and on one with nothing trainable:
        # the answer must not depend on what an earlier call left.
        results = []
        for start in (True, False):
            probe = copy.deepcopy(model).requires_grad_(start)
            set_trainable(probe, stage, train_head=train_head)
            results.append(_trainable(probe))
        from_all, from_none = results
        _expect(from_all != everything, f"After {call} every parameter is trainable: first freeze them all "
                                        "(model.requires_grad_(False)), then unfreeze by name.")
        _expect(from_all == from_none, f"{call} leaves {_names(from_all - from_none)} trainable when they were "
                                       "trainable before the call: first freeze everything, then unfreeze what "
                                       "this stage trains.")
        missing, extra = want - from_none, from_none - want
        if stage == "head":
            _expect(not missing, f"{call} left {_names(missing)} frozen: in stage 1 the classifier head trains.")
            _expect(not extra, f"{call} also made {_names(extra)} trainable: in stage 1 only the classifier trains.")
        adapters = {n for n in missing if "hadamard" in n}
        _expect(not adapters, f"{call} left the adapters frozen ({_names(adapters)}).")
        norms = {n for n in missing if "attention.output.LayerNorm" in n}
        _expect(not norms, f"{call} left the post-attention LayerNorms frozen ({_names(norms)}): the paper trains the "
                           "normalization right after the adapter too.")
        other_norms = {n for n in extra if "LayerNorm" in n}
        _expect(not other_norms, f"{call} made other LayerNorms trainable too ({_names(other_norms)}): only the one "
                                 "right after attention trains; match 'attention.output.LayerNorm', not every "
                                 "'LayerNorm'.")
        head = {n for n in missing | extra if n.startswith("classifier")}
        _expect(not head, f"{call}: with train_head={train_head} the classifier should "
                          f"{'train' if train_head else 'stay frozen'} in stage 2 ({_names(head)}).")
        _expect(not missing and not extra, f"After {call}: should train {_names(missing)}; should stay frozen: "
                                           f"{_names(extra)}.")
        set_trainable(model, stage, train_head=train_head)  # go on from this state, as a notebook would


def _reference_stage(model, batches, epochs, lr) -> list:
    """The loop exercise 5 asks for: AdamW without weight decay over what requires_grad, one step per
    batch, batches in the given order. Returns the loss of every step."""
    device = next(model.parameters()).device
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(epochs):
        for batch in batches:
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
    return losses


@_checked
def check_train_stage(train_stage):
    """Exercise 5: ``train_stage(model, batches, epochs, lr)`` trains what has ``requires_grad`` with
    AdamW (weight_decay=0), one step per batch in the given order, and returns every step's loss."""
    from .adapter import add_hadamard_adapter

    seed = _fresh_seed()
    r = random.Random(seed)
    model = _tiny_bert(seed)
    add_hadamard_adapter(model)
    names = [n for n, _ in model.named_parameters()]
    # A random set of parameters trains (not the key bias: softmax cancels its gradient exactly).
    chosen = set(r.sample([n for n in names if "key.bias" not in n], 4)) | {"classifier.weight"}
    for n, p in model.named_parameters():
        p.requires_grad_(n in chosen)
    with torch.no_grad():  # adapters away from the identity, so their gradients are not special
        for n, p in model.named_parameters():
            if "hadamard" in n:
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)) * 0.1)
    reference = copy.deepcopy(model)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    batches = _tiny_batches(model, seed + 1)
    epochs, lr = r.choice([1, 2]), r.choice([1e-2, 3e-3])
    losses = train_stage(model, batches, epochs, lr)
    expected_losses = _reference_stage(reference, batches, epochs, lr)

    changed = {n for n, p in model.named_parameters() if not torch.equal(p, start[n])}
    _expect(_trainable(model) == chosen, "train_stage changed which parameters are trainable: leave requires_grad "
                                         "as set_trainable left it.")
    _expect(not changed - chosen, f"Frozen parameters changed ({_names(changed - chosen)}): give the optimizer only "
                                  "the parameters with requires_grad=True.")
    _expect(changed == chosen, f"Trainable parameters did not change ({_names(chosen - changed)}): did the optimizer "
                               "get them, and did you call loss.backward() and optimizer.step() for every batch?")
    _expect(losses is not None and len(losses) == len(expected_losses),
            f"Return the loss of every step as a list: {epochs} epoch(s) x {len(batches)} batches = "
            f"{len(expected_losses)} numbers (got {None if losses is None else len(losses)}).")
    losses = [float(loss) for loss in losses]
    _expect(all(math.isfinite(loss) for loss in losses), "Some returned losses are not finite numbers.")
    # The same operations in the same order give the same numbers, so the tolerances are tight: a weight
    # decay of 0.01 moves the weights by a relative 3e-5 per step.
    same = all(torch.allclose(p, dict(reference.named_parameters())[n], rtol=1e-5, atol=1e-6)
               for n, p in model.named_parameters())
    _expect(math.isclose(losses[0], expected_losses[0], rel_tol=1e-6, abs_tol=1e-7),
            "The first loss is not the model's loss on the first batch: train on the batches in the given order, "
            "with model(**batch).loss.")
    _expect(same and all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-6) for a, b in zip(losses, expected_losses)),
            f"Your updates differ from AdamW(lr={lr}, weight_decay=0) taking one step per batch: did you call "
            "optimizer.zero_grad() after each step, and use lr as given?")


class _StageRecorder:
    """Watches a model's training forwards: which parameters are trainable at each, and their values
    whenever that set changes (the start of a new stage)."""

    def __init__(self, model):
        self.model, self.stages = model, []  # each stage: [trainable ids, forwards, values at its start]
        self.start = self.values()
        self.handle = model.register_forward_pre_hook(self.on_forward)

    def values(self) -> dict:
        return {id(p): p.detach().clone() for p in self.model.parameters()}

    def on_forward(self, module, args):
        if not torch.is_grad_enabled():
            return  # an evaluation, not a training step
        trainable = frozenset(id(p) for p in self.model.parameters() if p.requires_grad)
        if not self.stages or self.stages[-1][0] != trainable:
            self.stages.append([trainable, 0, self.values()])
        self.stages[-1][1] += 1

    def changed(self, before: dict, after: dict) -> set:
        return {i for i, v in after.items() if i in before and not torch.equal(v, before[i])}


@_checked
def check_two_stage(two_stage):
    """Exercise 6: ``two_stage(model, batches, head_epochs, adapter_epochs, head_lr, adapter_lr, train_head)``
    trains the head alone, injects adapters, then trains adapters + post-attention LayerNorms (+ head)."""
    from .adapter import add_hadamard_adapter
    from .freezing import freeze_for_stage

    seed = _fresh_seed()
    for train_head in (False, True):
        model = _tiny_bert(seed)
        reference = copy.deepcopy(model)
        batches = _tiny_batches(model, seed + 1)
        settings = dict(head_epochs=1, adapter_epochs=2, head_lr=3e-2, adapter_lr=1e-2)
        recorder = _StageRecorder(model)
        try:
            two_stage(model, batches, train_head=train_head, **settings)
        finally:
            recorder.handle.remove()
        end = recorder.values()
        name_of = {id(p): n for n, p in model.named_parameters()}
        named = lambda ids: {name_of.get(i, "(a parameter no longer in the model)") for i in ids}

        # What the stages should train, by name, from hadamard_lite on a copy.
        freeze_for_stage(reference, "head")
        head = _trainable(reference)
        add_hadamard_adapter(reference)
        freeze_for_stage(reference, "adapter", train_head=train_head)
        adapter_stage = _trainable(reference)
        _expect({n for n, _ in model.named_parameters()} == {n for n, _ in reference.named_parameters()},
                "After two_stage the model should hold one adapter per layer, as add_adapters puts them.")
        stages = recorder.stages
        _expect(stages, "No training step happened: two_stage should call train_stage for each stage.")
        _expect(named(stages[0][0]) == head,
                f"The first training steps had {_names(named(stages[0][0])) or 'nothing'} trainable: stage 1 trains "
                "the classifier head alone (set_trainable(model, 'head')).")
        _expect(len(stages) == 2, f"Training ran with {len(stages)} different sets of trainable parameters; "
                                  "expected two stages: head, then adapters.")
        _expect(named(stages[1][0]) == adapter_stage,
                f"Stage 2 (train_head={train_head}) trained {_names(named(stages[1][0]))}; it should train "
                f"{_names(adapter_stage)}: use set_trainable(model, 'adapter', train_head=train_head) after "
                "add_adapters.")
        steps = [settings["head_epochs"] * len(batches), settings["adapter_epochs"] * len(batches)]
        _expect([s[1] for s in stages] == steps,
                f"The stages took {[s[1] for s in stages]} steps; with {len(batches)} batches, head_epochs=1 and "
                f"adapter_epochs=2 they should take {steps}.")
        stage_1 = named(recorder.changed(recorder.start, stages[1][2]))
        stage_2 = named(recorder.changed(stages[1][2], end))
        _expect(stage_1 == head, f"Stage 1 changed {_names(stage_1) or 'nothing'}; it should change the head only.")
        _expect(stage_2 == adapter_stage, f"Stage 2 changed {_names(stage_2) or 'nothing'}; it should change "
                                          f"{_names(adapter_stage)}.")

        # The same recipe with the package's injection and freezing and the reference loop must land on
        # the same weights: this catches swapped learning rates or epochs.
        reference = _tiny_bert(seed)
        freeze_for_stage(reference, "head")
        _reference_stage(reference, batches, settings["head_epochs"], settings["head_lr"])
        add_hadamard_adapter(reference)
        freeze_for_stage(reference, "adapter", train_head=train_head)
        _reference_stage(reference, batches, settings["adapter_epochs"], settings["adapter_lr"])
        ours = dict(reference.named_parameters())
        _expect(all(torch.allclose(p, ours[n], rtol=1e-5, atol=1e-6) for n, p in model.named_parameters()),
                "Your weights after two_stage differ from stage 1 (head_epochs at head_lr), then add_adapters, then "
                "stage 2 (adapter_epochs at adapter_lr): check which epochs and learning rate each stage gets.")
