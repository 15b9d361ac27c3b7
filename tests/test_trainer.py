"""The trainer: learning on the sample, exact resume, DDP, NaN guard, the CLI round trip."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

import hadamard_lite as hl
from hadamard_lite.__main__ import main
from hadamard_lite.data import load_glue
from hadamard_lite.trainer import TrainConfig, Trainer, lr_at, train_two_stage


def small_bert(seed=0, num_labels=2):
    """A small random BERT that fits the bundled tokenizer's vocabulary."""
    torch.manual_seed(seed)
    config = AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=37, vocab_size=30522, num_labels=num_labels)
    return AutoModelForSequenceClassification.from_config(config)


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


def test_two_processes_under_torchrun_end_with_identical_adapters(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
               str(Path(__file__).with_name("ddp_worker.py")), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert ranks[0]["world"] == ranks[1]["world"] == 2
    a, b = ranks[0]["state"], ranks[1]["state"]
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["bert.encoder.layer.0.attention.output.dense.hadamard.weight"], torch.ones(32))


def test_cli_train_then_evaluate_reproduces_the_metric(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--task", "mrpc", "--source", "sample", "--limit", "96", "--head-epochs", "1",
                 "--epochs", "1", "--output", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("mrpc | f1 ") and "trainable params" in line and "samples/s" in line
    assert (out / "adapter_model.safetensors").is_file() and (out / "run_summary.json").is_file()
    assert main(["evaluate", str(out)]) == 0
    assert "(reproduced)" in capsys.readouterr().out
    assert main(["evaluate", str(tmp_path / "missing")]) == 2


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
