"""The notebook check functions accept right answers and reject the plausible wrong ones.

Each check draws fresh random cases on every call, so each test below runs the check several
times: a wrong answer that passed by luck on one draw would show.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hadamard_lite import exercises

REPEATS = 5


def accepts(check, answer, *args):
    return all(check(answer, *args) for _ in range(REPEATS))


def rejects(check, answer, *args):
    return not any(check(answer, *args) for _ in range(REPEATS))


def test_head_parameters():
    assert accepts(exercises.check_head_parameters, lambda hidden, labels: hidden * labels + labels)
    assert rejects(exercises.check_head_parameters, lambda hidden, labels: hidden * labels)  # forgot the bias
    assert rejects(exercises.check_head_parameters, lambda hidden, labels: (hidden + 1) * hidden)
    assert rejects(exercises.check_head_parameters, lambda hidden, labels: 1155)  # 384 x 3 + 3, hard-coded
    assert rejects(exercises.check_head_parameters, 1155)  # a number, not a function


def stage_two(config, layers, train_head):
    head = config.hidden_size * config.num_labels + config.num_labels
    return 4 * config.hidden_size * len(layers) + (head if train_head else 0)


def test_trainable_count():
    check = exercises.check_trainable_count
    assert accepts(check, stage_two)
    # notebook 03's old disagreement: with the head or without it, the check must know which
    assert rejects(check, lambda c, layers, head: 4 * c.hidden_size * len(layers))
    assert rejects(check, lambda c, layers, head: stage_two(c, layers, True))
    assert rejects(check, lambda c, layers, head: 2 * c.hidden_size * len(layers))  # adapters without LayerNorms
    assert rejects(check, lambda c, layers, head: 4 * c.hidden_size * c.num_hidden_layers)  # ignores layers
    assert rejects(check, lambda c, layers, head: 4_608)  # 3 x 4 x 384
    assert rejects(check, lambda c, layers, head: 5_378)  # ... + the head's 770


def test_method_count():
    check = exercises.check_method_count
    hadamard = lambda c, layers: 4 * c.hidden_size * len(layers)
    lora = lambda c, r: c.num_hidden_layers * 2 * 2 * c.hidden_size * r
    assert accepts(check, hadamard, "hadamard")
    assert accepts(check, lora, "lora")
    assert rejects(check, lambda c, layers: 65_536, "hadamard")  # bert-large, 16 layers, as printed in the README
    assert rejects(check, lambda c, r: 294_912, "lora")  # bert-base, r = 8, as printed in notebook 04
    assert rejects(check, lambda c, layers: 4 * c.hidden_size * c.num_hidden_layers, "hadamard")
    assert rejects(check, lambda c, layers: 2 * c.hidden_size * len(layers), "hadamard")
    assert rejects(check, lambda c, r: c.num_hidden_layers * 2 * c.hidden_size * r, "lora")  # one of A, B
    assert rejects(check, lambda c, r: c.num_hidden_layers * 4 * 2 * c.hidden_size * r, "lora")  # q, k, v and output
    bitfit = lambda c: c.num_hidden_layers * (7 * c.hidden_size + c.intermediate_size) + 2 * c.hidden_size
    assert accepts(check, bitfit, "bitfit")
    assert rejects(check, lambda c: c.num_hidden_layers * (7 * c.hidden_size + c.intermediate_size), "bitfit")
    assert rejects(check, lambda c: 102_912, "bitfit")  # bert-base, as printed in notebook 04
    assert accepts(check, lambda c: c.num_hidden_layers * (2 * c.hidden_size + c.intermediate_size), "ia3")
    with pytest.raises(ValueError, match="unknown method"):
        check(lambda c: 0, "prefix")


def test_adapter_gradients():
    check = exercises.check_adapter_gradients
    assert accepts(check, lambda a, g: ((g * a).sum((0, 1)), g.sum((0, 1))))
    assert accepts(check, lambda a, g: ((g * a).reshape(-1, a.shape[-1]).sum(0), g.reshape(-1, a.shape[-1]).sum(0)))
    assert rejects(check, lambda a, g: ((g * a).mean((0, 1)), g.sum((0, 1))))  # mean, not sum
    assert rejects(check, lambda a, g: (g.sum((0, 1)), g.sum((0, 1))))  # forgot the factor a
    assert rejects(check, lambda a, g: ((g * a).sum(0), g.sum(0)))  # summed over the batch only
    assert rejects(check, lambda a, g: (g * a, g))  # not summed at all


def test_merge():
    check = exercises.check_merge  # the adapter before the linear layer: linear(W * x + b)
    assert accepts(check, lambda lin, w, b: (lin.weight * w[None, :], lin.weight @ b + lin.bias))
    assert rejects(check, lambda lin, w, b: (lin.weight * w[None, :], lin.bias + b))  # shift not through the weight
    assert rejects(check, lambda lin, w, b: (lin.weight * w[:, None], lin.bias * w + b))  # notebook 02's other order
    assert rejects(check, lambda lin, w, b: (lin.weight, lin.bias))


def r2(t, p):
    return 1 - ((t - p) ** 2).sum() / ((t - t.mean(0)) ** 2).sum()


def test_r2():
    check = exercises.check_r2
    assert accepts(check, r2)
    assert rejects(check, lambda t, p: 1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum())  # one global mean
    assert rejects(check, lambda t, p: np.mean([r2(t[:, [j]], p[:, [j]]) for j in range(t.shape[1])]))  # per-column average
    assert rejects(check, lambda t, p: 1 - ((t - p) ** 2).mean() / t.var())
    assert rejects(check, lambda t, p: np.corrcoef(t.ravel(), p.ravel())[0, 1] ** 2)


def test_cosine_of_changes():
    check = exercises.check_cosine_of_changes
    assert accepts(check, lambda a, b: F.cosine_similarity(a - 1, b - 1, dim=0))
    assert accepts(check, lambda a, b: float(np.dot(a - 1, b - 1) / np.linalg.norm(a - 1) / np.linalg.norm(b - 1)))
    assert rejects(check, lambda a, b: F.cosine_similarity(a, b, dim=0))  # raw W
    assert rejects(check, lambda a, b: float(np.corrcoef(a, b)[0, 1]))  # correlation of raw W
    assert rejects(check, lambda a, b: torch.dot(a - 1, b - 1))  # not normalised
    assert rejects(check, lambda a, b: 1.0)


def test_checks_say_what_is_wrong_and_let_stubs_through(capsys):
    exercises.check_head_parameters(lambda hidden, labels: hidden * labels)
    out = capsys.readouterr().out
    assert out.startswith("Not yet.") and "your function gave" in out
    exercises.check_merge(lambda lin, w, b: 1 / 0)
    assert "ZeroDivisionError" in capsys.readouterr().out

    def stub(*args):
        raise NotImplementedError("Exercise 1 not done yet")
    with pytest.raises(NotImplementedError, match="not done yet"):
        exercises.check_r2(stub)


def test_per_example_adapter_check():
    assert exercises.check_per_example_adapter(lambda x, w, b, i: x * w[i].unsqueeze(1) + b[i].unsqueeze(1))
    assert not exercises.check_per_example_adapter(lambda x, w, b, i: x * w[0] + b[0])  # one task for all
    assert not exercises.check_per_example_adapter(lambda x, w, b, i: x * w[i.flip(0)].unsqueeze(1) + b[i.flip(0)].unsqueeze(1))
