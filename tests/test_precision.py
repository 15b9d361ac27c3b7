"""The precision a run uses: explicit choices are honoured, "auto" picks bf16 only on GPUs that have it."""
import pytest
import torch

from hadamard_lite.trainer import precision_for


def test_explicit_precisions_and_bad_ones():
    cpu = torch.device("cpu")
    assert precision_for(cpu, "fp32") == "fp32"
    assert precision_for(cpu, "bf16") == "bf16"
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        precision_for(cpu, "fp16")
    with pytest.raises(ValueError, match="unknown precision 'half'"):
        precision_for(cpu, "half")


def test_auto_on_cpu_keeps_fp32():
    """bf16's scores were never measured on a CPU with native bf16 (issue 8's condition for making it the
    CPU default), so "auto" keeps fp32 on every CPU, whatever its instructions; asking for bf16 still gets it."""
    cpu = torch.device("cpu")
    assert precision_for(cpu) == "fp32"
    assert precision_for(cpu, "bf16") == "bf16"
    assert precision_for(torch.device("mps")) == "fp32"


def test_auto_on_cuda_follows_the_compute_capability(monkeypatch):
    """Ampere and newer get bf16; older cards (Colab's T4 is 7.5) fp16 with a scaler, even though
    torch.cuda.is_bf16_supported() says yes there (it counts emulation)."""
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    for capability, expected in [((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")]:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert precision_for(gpu) == expected


def test_bf16_training_on_cpu_runs_under_autocast_with_float32_master_weights():
    from test_trainer import small_bert
    import hadamard_lite as hl
    from hadamard_lite.data import load_glue
    from hadamard_lite.trainer import TrainConfig, Trainer
    train = load_glue("rte", "train", source="sample", limit=32)
    model = small_bert()
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter")
    seen = []
    model.bert.encoder.layer[0].attention.output.dense.linear.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    t = Trainer(model, hl.load_tokenizer(), train, None,
                TrainConfig(epochs=1, lr=1e-3, batch_size=8, precision="bf16", progress=False))
    assert t.fit()["precision"] == "bf16"
    assert torch.bfloat16 in seen  # the matrix products really ran in bf16
    assert all(p.dtype == torch.float32 for p in t.trainable.values())  # master weights stay float32
