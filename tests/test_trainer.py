"""The trainer: learning on the sample, exact resume, DDP equal to one process, accumulation equal to
one larger batch, keep_best, no weight decay on scales, the collapse warning, NaN guard."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

import hadamard_lite as hl
from hadamard_lite.data import batches, load_glue
from hadamard_lite.trainer import TrainConfig, Trainer, lr_at, train_two_stage


def small_bert(seed=0, num_labels=2, dropout=0.1):
    """A small random BERT that fits the bundled tokenizer's vocabulary."""
    torch.manual_seed(seed)
    config = AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=37, vocab_size=30522, num_labels=num_labels,
                                  hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return AutoModelForSequenceClassification.from_config(config)


def adapted_bert(dropout=0.1, train_head=True):
    model = small_bert(dropout=dropout)
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter", train_head=train_head)
    return model


def trainable_state(model):
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_learning_rate_schedule():
    assert lr_at(0, 100, 10, 1.0) == pytest.approx(0.1)
    assert lr_at(9, 100, 10, 1.0) == pytest.approx(1.0)
    assert lr_at(55, 100, 10, 1.0) == pytest.approx(0.5)
    assert lr_at(100, 100, 10, 1.0) == 0.0


def test_one_epoch_on_the_sample_beats_the_majority_class():
    train = load_glue("sst2", "train", source="sample")
    dev = load_glue("sst2", "dev", source="sample")
    majority = max(dev.labels.count(0), dev.labels.count(1)) / len(dev)
    model = hl.load_model(num_labels=2)
    result = train_two_stage(model, hl.load_tokenizer(), train, dev, head_epochs=0, adapter_epochs=1,
                             config=TrainConfig(progress=False))
    assert result["best_metric"] > majority + 0.1, (result["best_metric"], majority)
    assert hl.count_parameters(model)[0] == 6 * 4 * 384 + 384 * 2 + 2


def test_cpu_runs_are_deterministic_and_train_only_what_is_trainable():
    train = load_glue("rte", "train", source="sample", limit=64)
    states = []
    for _ in range(2):
        model = small_bert()
        hl.add_hadamard_adapter(model)
        hl.freeze_for_stage(model, "adapter")
        frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
        Trainer(model, hl.load_tokenizer(), train, None, TrainConfig(epochs=1, lr=1e-2, batch_size=8, progress=False)).fit()
        assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if n in frozen)
        states.append(trainable_state(model))
    assert all(torch.equal(states[0][n], states[1][n]) for n in states[0])
    assert not torch.equal(states[0]["bert.encoder.layer.0.attention.output.dense.hadamard.weight"], torch.ones(32))


def test_resume_equals_uninterrupted(tmp_path):
    train = load_glue("sst2", "train", source="sample", limit=96)
    dev = load_glue("sst2", "dev", source="sample", limit=32)
    tokenizer = hl.load_tokenizer()

    def setup():
        model = small_bert()  # BERT's default dropout of 0.1 is on: the RNG state must resume too
        hl.add_hadamard_adapter(model)
        hl.freeze_for_stage(model, "adapter", train_head=True)
        return model

    config = dict(epochs=3, lr=1e-2, batch_size=16, keep_best=False, progress=False)
    whole = setup()
    Trainer(whole, tokenizer, train, dev, TrainConfig(**config)).fit()

    class Interrupt(Exception):
        pass

    def stop_after_first_epoch(trainer, record):
        if record["epoch"] == 1:
            raise Interrupt

    first = setup()
    with pytest.raises(Interrupt):
        Trainer(first, tokenizer, train, dev, TrainConfig(**config, checkpoint_dir=str(tmp_path)),
                callbacks=[stop_after_first_epoch]).fit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temporary left behind
    torch.manual_seed(999)  # the resumed process starts with other random state
    resumed = setup()
    trainer = Trainer(resumed, tokenizer, train, dev, TrainConfig(**config, resume_from=str(tmp_path / "checkpoint.pt")))
    result = trainer.fit()
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3]
    a, b = trainable_state(whole), trainable_state(resumed)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_nan_loss_stops_with_a_message():
    model = small_bert()
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter")
    with torch.no_grad():
        hl.hadamard_adapters(model)[0].weight.fill_(float("nan"))
    train = load_glue("sst2", "train", source="sample", limit=32)
    with pytest.raises(FloatingPointError, match="loss became nan.*Lower the learning rate"):
        Trainer(model, hl.load_tokenizer(), train, None, TrainConfig(progress=False)).fit()


def test_refuses_half_precision_master_weights_and_nothing_to_train():
    model = small_bert()
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter")
    train = load_glue("sst2", "train", source="sample", limit=32)
    with pytest.raises(ValueError, match="half-precision master weights"):
        Trainer(model.half(), hl.load_tokenizer(), train)
    with pytest.raises(ValueError, match="nothing to train"):
        Trainer(small_bert().requires_grad_(False), hl.load_tokenizer(), train)


def test_bad_settings_and_data_get_one_line_errors_before_training():
    model = adapted_bert()
    train = load_glue("sst2", "train", source="sample", limit=32)
    tokenizer = hl.load_tokenizer()
    with pytest.raises(ValueError, match="TrainConfig.batch_size is 0; it must be at least 1"):
        Trainer(model, tokenizer, train, None, TrainConfig(batch_size=0))
    with pytest.raises(ValueError, match="TrainConfig.grad_accum is 0"):
        Trainer(model, tokenizer, train, None, TrainConfig(grad_accum=0))
    with pytest.raises(ValueError, match="training data is empty"):
        Trainer(model, tokenizer, load_glue("sst2", "train", source="sample", limit=32).subset([]), None)
    regression = load_glue("stsb", "train", source="sample", limit=8)
    with pytest.raises(ValueError, match=r"the model has 2 output\(s\) but stsb needs 1: load it with load_model\(num_labels=1\)"):
        Trainer(model, tokenizer, regression, None)
    trainer = Trainer(model, tokenizer, train, None, TrainConfig(progress=False))
    with pytest.raises(ValueError, match="nothing to evaluate"):
        trainer.evaluate()


def test_predicting_leaves_the_model_in_the_mode_it_was_and_fit_ends_in_eval_mode():
    from hadamard_lite.inference import predictions
    model = adapted_bert()
    train = load_glue("sst2", "train", source="sample", limit=16)
    model.train()
    predictions(model, hl.load_tokenizer(), train)
    assert model.training  # a user's training loop goes on with dropout
    Trainer(model, hl.load_tokenizer(), train, None, TrainConfig(epochs=1, progress=False)).fit()
    assert not model.training


def test_two_processes_under_torchrun_equal_one_process_with_the_same_global_batch(tmp_path):
    """2 processes x batch 16 is one process with batch 16 accumulated over 2 batches: DDP averages
    the two processes' gradients, accumulation averages the two batches' (dropout off in both)."""
    # On the CPU (gloo) even on a GPU machine: exact float32 sums, and no second GPU needed.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
               str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["bert.encoder.layer.0.attention.output.dense.hadamard.weight"], torch.ones(32))

    from ddp_worker import DDP_SETUP
    single = adapted_bert(dropout=0.0)
    train = load_glue("sst2", "train", source="sample", limit=DDP_SETUP["examples"])
    config = TrainConfig(epochs=1, lr=1e-2, batch_size=DDP_SETUP["batch_size"], grad_accum=2, device="cpu",
                         precision="fp32", progress=False)
    Trainer(single, hl.load_tokenizer(), train, None, config).fit()
    one = trainable_state(single)
    assert one.keys() == a.keys()
    for n in a:  # the same sums in another order: equal within float rounding
        torch.testing.assert_close(a[n], one[n], rtol=1e-4, atol=1e-6, msg=n)


def fixed_batches(trainer):
    """Batches in one fixed order for every epoch: big batch j = small batches kj .. kj+k-1."""
    trainer._epoch_batches = lambda epoch: list(batches(trainer.train_data, trainer.tokenizer,
                                                        trainer.config.batch_size, trainer.config.max_length))


def gradients_at_each_step(batch_size, grad_accum):
    """The gradients each optimizer step receives, on 80 examples (dropout off)."""
    train = load_glue("sst2", "train", source="sample", limit=80)
    trainer = Trainer(adapted_bert(dropout=0.0), hl.load_tokenizer(), train, None,
                      TrainConfig(epochs=1, batch_size=batch_size, grad_accum=grad_accum, device="cpu",
                                  precision="fp32", progress=False))  # fp32: the comparison is to 1e-4
    fixed_batches(trainer)
    seen, step = [], trainer._optimizer_step

    def record_then_step(*args):
        seen.append({n: p.grad.clone() for n, p in trainer.trainable.items()})
        step(*args)

    trainer._optimizer_step = record_then_step
    trainer.fit()
    return seen


def test_gradient_accumulation_over_k_batches_equals_one_batch_k_times_larger():
    small = gradients_at_each_step(batch_size=8, grad_accum=3)  # 10 batches: groups of 3, 3, 3 and 1
    big = gradients_at_each_step(batch_size=24, grad_accum=1)  # 4 batches: 24, 24, 24 and 8
    assert len(small) == len(big) == 4
    for step, (s, b) in enumerate(zip(small, big)):  # the last, partial group included
        for n in s:
            torch.testing.assert_close(s[n], b[n], rtol=1e-4, atol=1e-7, msg=f"step {step}: {n}")


def scripted_predictions(trainer, per_epoch):
    """Replace the dev predictions with a script, one list per epoch."""
    script = iter(per_epoch)
    trainer.predict = lambda data: next(script)


def dev_of_four():
    from hadamard_lite.data import GlueSplit
    from hadamard_lite.glue_tasks import get_task
    return GlueSplit(get_task("sst2"), "dev", "four", ["a", "b", "c", "d"], None, [0, 1, 0, 1])


@pytest.mark.parametrize("keep_best", [True, False])
def test_keep_best_restores_the_best_epoch_when_a_later_one_is_worse(keep_best):
    train = load_glue("sst2", "train", source="sample", limit=32)
    states = []
    trainer = Trainer(adapted_bert(), hl.load_tokenizer(), train, dev_of_four(),
                      TrainConfig(epochs=3, batch_size=8, keep_best=keep_best, progress=False),
                      callbacks=[lambda t, record: states.append(trainable_state(t.model))])
    scripted_predictions(trainer, [[0, 1, 1, 0], [0, 1, 0, 1], [1, 1, 1, 0]])  # accuracy 0.5, 1.0, 0.25
    result = trainer.fit()
    assert result["best_metric"] == 1.0 and [r["eval_accuracy"] for r in result["history"]] == [0.5, 1.0, 0.25]
    final = trainable_state(trainer.model)
    kept, last = states[1], states[2]
    assert any(not torch.equal(kept[n], last[n]) for n in kept)  # epoch 3 did change the weights
    expected = kept if keep_best else last
    assert all(torch.equal(final[n], expected[n]) for n in final)


def test_adapter_scales_get_no_weight_decay():
    """One AdamW step on zero gradients moves a weight only by its weight decay."""
    train = load_glue("sst2", "train", source="sample", limit=32)
    trainer = Trainer(adapted_bert(), hl.load_tokenizer(), train, None,
                      TrainConfig(lr=0.1, weight_decay=0.5, progress=False))
    before = trainable_state(trainer.model)
    for p in trainer.trainable.values():
        p.grad = torch.zeros_like(p)
    trainer._optimizer_step(total_steps=1, warmup_steps=1)  # learning rate 0.1 at step 0
    after = trainable_state(trainer.model)
    scales = [n for n in after if n.endswith("hadamard.weight") or n.endswith("LayerNorm.weight")]
    assert len(scales) == 4 and all(torch.equal(after[n], before[n]) for n in scales)
    torch.testing.assert_close(after["classifier.weight"], before["classifier.weight"] * (1 - 0.1 * 0.5))


def test_a_run_that_ends_on_a_constant_prediction_warns_naming_the_collapse():
    train = load_glue("sst2", "train", source="sample", limit=32)
    trainer = Trainer(adapted_bert(), hl.load_tokenizer(), train, dev_of_four(),
                      TrainConfig(epochs=2, batch_size=8, lr=5.0, progress=False))
    scripted_predictions(trainer, [[1, 1, 1, 1], [1, 1, 1, 1]])
    with pytest.warns(UserWarning, match=r"collapsed to a constant prediction.*label 'positive'.*lower the learning rate \(now 5\)"):
        result = trainer.fit()
    assert "collapsed" in result["collapsed"] and result["history"][0]["constant_prediction"] == "the label 'positive'"
    # The epoch it ends with is what counts: a constant last epoch after a better one is not a collapse.
    trainer = Trainer(adapted_bert(), hl.load_tokenizer(), train, dev_of_four(),
                      TrainConfig(epochs=2, batch_size=8, progress=False))
    scripted_predictions(trainer, [[0, 1, 1, 1], [1, 1, 1, 1]])
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert trainer.fit()["collapsed"] is None


def test_gradient_accumulation_steps_once_per_group():
    train = load_glue("sst2", "train", source="sample", limit=80)  # 10 batches of 8
    model = small_bert()
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter")
    trainer = Trainer(model, hl.load_tokenizer(), train, None,
                      TrainConfig(epochs=1, batch_size=8, grad_accum=3, progress=False))
    trainer.fit()
    assert trainer.step == 4  # 3 + 3 + 3 + the last partial group of 1
    assert len(trainer.step_losses) == 10  # one loss per batch
