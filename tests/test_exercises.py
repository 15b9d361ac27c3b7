"""The notebook check functions accept right answers and reject wrong ones."""
import torch

from hadamard_lite import exercises


def test_check_functions(capsys):
    assert exercises.check_head_parameters(1155, hidden_size=384, num_labels=3)
    assert not exercises.check_head_parameters(1152, hidden_size=384, num_labels=3)
    assert exercises.check_trainable_count(65_536, "bert-large-uncased", layers=range(16))
    assert not exercises.check_trainable_count(32_768, "bert-large-uncased", layers=range(16))
    assert exercises.check_method_count(294_912, "lora")
    assert not exercises.check_method_count(147_456, "lora")
    out = capsys.readouterr().out
    assert out.count("Correct!") == 3 and out.count("Not yet.") == 3


def test_gradient_and_merge_checks():
    assert exercises.check_adapter_gradients(lambda a, g: ((g * a).sum((0, 1)), g.sum((0, 1))))
    assert not exercises.check_adapter_gradients(lambda a, g: ((g * a).mean((0, 1)), g.sum((0, 1))))
    assert exercises.check_merge(lambda lin, w, b: (lin.weight * w[:, None], lin.bias * w + b))
    assert not exercises.check_merge(lambda lin, w, b: (lin.weight * w[None, :], lin.bias + b))


def test_r2_and_cosine_checks():
    import numpy as np
    assert exercises.check_r2(lambda t, p: 1 - ((t - p) ** 2).sum() / ((t - t.mean(0)) ** 2).sum())
    assert not exercises.check_r2(lambda t, p: 1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum())
    cos = lambda a, b: torch.nn.functional.cosine_similarity(a - 1, b - 1, dim=0)
    assert exercises.check_cosine_of_changes(cos)
    assert not exercises.check_cosine_of_changes(lambda a, b: torch.nn.functional.cosine_similarity(a, b, dim=0))


def test_per_example_adapter_check():
    assert exercises.check_per_example_adapter(lambda x, w, b, i: x * w[i].unsqueeze(1) + b[i].unsqueeze(1))
    assert not exercises.check_per_example_adapter(lambda x, w, b, i: x * w[0] + b[0])  # one task for all
    assert not exercises.check_per_example_adapter(lambda x, w, b, i: x * w[i.flip(0)].unsqueeze(1) + b[i.flip(0)].unsqueeze(1))
