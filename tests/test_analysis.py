"""The analysis functions on tiny random models and synthetic data."""
import numpy as np
import pytest
import torch

import hadamard_lite as hl
from hadamard_lite import analysis
from conftest import output_of, tiny_batch, tiny_model


def adapted(seed=0, scale=(0.1, 0.5, 0.2)):
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for (i, a), s in zip(hl.hadamard_adapters(model).items(), scale):
            a.weight.add_(s * torch.randn(a.weight.shape, generator=g))
            a.bias.add_(s * torch.randn(a.bias.shape, generator=g))
    return model


def test_adapter_statistics_measure_distance_from_identity():
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model, layers=[0, 2])
    with torch.no_grad():
        hl.hadamard_adapters(model)[2].weight.fill_(1.5)
        hl.hadamard_adapters(model)[2].bias.fill_(-0.25)
    stats = analysis.adapter_statistics(model)
    assert [s["layer"] for s in stats] == [0, 2]
    assert stats[0]["w_norm"] == 0 and stats[0]["b_norm"] == 0
    assert stats[1]["w_mean_abs"] == pytest.approx(0.5) and stats[1]["b_max_abs"] == pytest.approx(0.25)
    assert stats[1]["w_norm"] == pytest.approx(0.5 * np.sqrt(32))


def test_cross_task_similarity():
    a, b = adapted(seed=0), adapted(seed=0)
    c = adapted(seed=0)
    with torch.no_grad():
        for adapter in hl.hadamard_adapters(c).values():
            adapter.weight.copy_(2 - adapter.weight)  # W - 1 negated
            adapter.bias.neg_()
    sim = analysis.cross_task_similarity({"a": a, "b": b, "c": c})
    assert sim["tasks"] == ["a", "b", "c"] and sim["w"].shape == (3, 3, 3)
    assert np.allclose(sim["w"][:, 0, 1], 1) and np.allclose(sim["b"][:, 0, 2], -1)
    assert np.allclose(sim["w"][:, [0, 1, 2], [0, 1, 2]], 1)
    other = tiny_model("bert")
    hl.add_hadamard_adapter(other, layers=[1])
    with pytest.raises(ValueError, match="different layers"):
        analysis.cross_task_similarity({"a": a, "x": other})


def test_layer_importance_ranks_the_layer_that_changed_most_first():
    pretrained = tiny_model("bert")
    model = adapted(scale=(0.01, 0.5, 0.05))
    batch = tiny_batch()
    reference = output_of(model, batch)
    before = {n: p.clone() for n, p in model.state_dict().items()}
    evaluate = lambda m: -float((output_of(m, batch) - reference).abs().mean())
    ranking = analysis.layer_importance(model, pretrained, evaluate)
    assert [r["layer"] for r in ranking][0] == 1 and ranking[0]["drop"] > ranking[-1]["drop"] > 0
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before)  # every layer restored


def test_capture_attention_outputs_keeps_real_tokens_before_the_adapter():
    model = adapted()
    batch = tiny_batch()
    outputs = analysis.capture_attention_outputs(model, [batch])
    assert len(outputs) == 3 and outputs[0].shape == (int(batch["attention_mask"].sum()), 32)
    seen = {}
    linear = model.bert.encoder.layer[1].attention.output.dense.linear
    hook = linear.register_forward_hook(lambda m, i, o: seen.update(out=o))
    with torch.no_grad():
        model(**batch)
    hook.remove()
    expected = seen["out"][batch["attention_mask"].bool()].double().numpy()
    assert np.allclose(outputs[1], expected)


def test_fit_attention_maps_tell_the_map_families_apart():
    r = np.random.default_rng(0)
    before = r.normal(size=(4000, 16))
    w, b = r.normal(size=16), r.normal(size=16)
    elementwise = analysis.fit_attention_maps(before, before * w + b)
    assert elementwise["elementwise"] > 0.999 and elementwise["linear"] > 0.999
    mixing = before @ r.normal(size=(16, 16))
    full = analysis.fit_attention_maps(before, mixing)
    assert full["linear"] > 0.999 and full["elementwise"] < 0.5
    squares = analysis.fit_attention_maps(before, before ** 2 + before)
    assert squares["quadratic"] > 0.999 > squares["elementwise"]
    assert elementwise["norm_before"] == pytest.approx(np.linalg.norm(before, axis=1).mean())


def test_fit_attention_maps_score_the_change_against_the_identity():
    """A small change on top of large outputs: every map, the identity included, explains the
    outputs almost fully; only the change shows which map captures what fine-tuning did."""
    r = np.random.default_rng(1)
    before = r.normal(size=(4000, 16)) * 10
    change = before @ (0.05 * r.normal(size=(16, 16)))  # a small mixing change: not element-wise
    fit = analysis.fit_attention_maps(before, before + change)
    assert fit["identity"] > 0.95 and fit["elementwise"] > 0.95  # the outputs: nothing told apart
    assert fit["change"]["identity"] <= 0  # predicting no change explains none of it
    assert fit["change"]["linear"] > 0.999 and fit["change"]["elementwise"] < 0.3
    assert fit["linear_params"] == 16 * 17 and fit["fit_tokens"] + fit["test_tokens"] == 4000
    assert fit["relative_change"] == pytest.approx(np.linalg.norm(change, axis=1).mean() / np.linalg.norm(before, axis=1).mean())


def test_pattern_vectors_hold_every_change_of_stage_two():
    pretrained = tiny_model("bert")
    model = hl.add_hadamard_adapter(tiny_model("bert"))
    vectors = analysis.pattern_vectors(model, pretrained)
    assert all(not vectors[k].any() for k in ("w", "b", "ln_weight", "ln_bias"))  # identity at start
    with torch.no_grad():
        hl.post_attention_layer_norms(model)[1].bias.add_(0.5)
        hl.hadamard_adapters(model)[0].weight.mul_(2)
    vectors = analysis.pattern_vectors(model, pretrained)
    assert np.allclose(vectors["ln_bias"][1], 0.5) and not vectors["ln_bias"][0].any()
    assert np.allclose(vectors["w"][0], 1.0) and not vectors["ln_weight"].any()


def test_prune_layers_takes_adapters_out_and_restores_layer_norms():
    pretrained = tiny_model("bert")
    model = adapted()
    with torch.no_grad():
        hl.post_attention_layer_norms(model)[0].weight.add_(1.0)
    analysis.prune_layers(model, pretrained, keep=[1, 2])
    assert hl.adapted_layers(model) == [1, 2]
    norm = model.bert.encoder.layer[0].attention.output.LayerNorm
    assert torch.equal(norm.weight, pretrained.bert.encoder.layer[0].attention.output.LayerNorm.weight)


def test_shared_adapters_are_one_module_and_train_together():
    from hadamard_lite.data import load_glue
    from test_trainer import small_bert

    models = {}
    for task, labels in (("sst2", 2), ("stsb", 1)):
        models[task] = small_bert(num_labels=labels)
        hl.add_hadamard_adapter(models[task])
        hl.freeze_for_stage(models[task], "adapter", train_head=True)
    analysis.share_adapters(models, layers=[0])
    a, b = models["sst2"].bert.encoder.layer, models["stsb"].bert.encoder.layer
    assert a[0].attention.output.dense.hadamard is b[0].attention.output.dense.hadamard
    assert a[0].attention.output.LayerNorm is b[0].attention.output.LayerNorm
    assert a[1].attention.output.dense.hadamard is not b[1].attention.output.dense.hadamard
    train = {t: load_glue(t, "train", source="sample", limit=48) for t in models}
    dev = {t: load_glue(t, "dev", source="sample", limit=24) for t in models}
    result = analysis.train_multitask(models, hl.load_tokenizer(), train, dev, epochs=1, progress=False)
    assert set(result["scores"]) == {"sst2", "stsb"}
    # shared layer 0 counted once: 2 tasks x (layer 1 adapter + norm) + layer 0 once + two heads
    assert result["trainable"] == 4 * 32 + 2 * 4 * 32 + (32 * 2 + 2) + (32 + 1)
    assert not torch.equal(a[0].attention.output.dense.hadamard.weight, torch.ones(32))
    assert set(result["commonest_prediction"]) == {"sst2"}  # STS-B is a regression: no class to count
    # A head that answers class 0 whatever the input (lr 0 keeps it so): recorded as a collapse to one answer
    with torch.no_grad():
        models["sst2"].classifier.weight.zero_()
        models["sst2"].classifier.bias.copy_(torch.tensor([5.0, 0.0]))
    result = analysis.train_multitask(models, hl.load_tokenizer(), train, dev, epochs=1, lr=0.0, progress=False)
    assert result["commonest_prediction"] == {"sst2": 1.0}
