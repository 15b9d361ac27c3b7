"""Every tensor meets the model on the model's device, checked without a GPU.

A model that ``Trainer`` moved to CUDA or MPS fails on CPU inputs; on a laptop everything is on
the CPU and the bug hides. Here the model sits on PyTorch's ``meta`` device (shapes, no values),
and a hook on its forward records where each input is: a CPU input is the GPU crash, caught on
the CPU. The hook stops the forward pass (values on meta do not exist, so there is nothing to
read back), which is enough: what is checked is where the inputs arrive.
"""
import ast
import json
from pathlib import Path

import pytest
import torch

import hadamard_lite as hl
from hadamard_lite import analysis, inference
from hadamard_lite.data import batches, load_glue

ROOT = Path(__file__).resolve().parents[1]


class Arrived(Exception):
    """Raised by the hook once the inputs reached the model on the right device."""


def watch_inputs(model):
    """A forward pre-hook on the encoder (every path, logits or pooled features, goes through it)
    that fails on an input off the model's device and stops a correct pass."""
    def hook(module, args, kwargs):
        device = next(module.parameters()).device
        tensors = [t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor)]
        wrong = {str(t.device) for t in tensors if t.device != device}
        assert not wrong, f"inputs on {wrong} reached a model on {device}"
        raise Arrived
    return model.base_model.register_forward_pre_hook(hook, with_kwargs=True)


def meta_model(num_labels=2):
    """MiniLM's shapes on the meta device: no memory, no download."""
    model = hl.model_from_config(hl.published_config(hl.DEFAULT_MODEL), num_labels=num_labels)
    watch_inputs(model)
    return model


@pytest.fixture(scope="module")
def tokenizer():
    return hl.load_tokenizer()


def test_inference_moves_inputs_to_the_model(tokenizer):
    dev = load_glue("sst2", "dev", source="sample", limit=8)
    for data in (dev, ["a gripping film .", "dull"], [("a b", "b a")]):
        with pytest.raises(Arrived):
            inference.logits(meta_model(), tokenizer, data)
    with pytest.raises(Arrived):
        inference.mean_pooled(meta_model(), tokenizer, dev)


def test_capture_attention_outputs_moves_cpu_batches_to_the_model(tokenizer):
    dev = load_glue("sst2", "dev", source="sample", limit=8)
    with pytest.raises(Arrived):
        analysis.capture_attention_outputs(meta_model(), batches(dev, tokenizer, batch_size=4))


def test_train_multitask_trains_on_the_models_device(tokenizer, monkeypatch):
    # The device the trainer would pick is meta here; the old code trained on CPU batches.
    monkeypatch.setattr("hadamard_lite.trainer.pick_device", lambda device="auto": torch.device("meta"))
    models = {"sst2": meta_model(), "stsb": meta_model(num_labels=1)}
    for m in models.values():
        hl.add_hadamard_adapter(m)
        hl.freeze_for_stage(m, "adapter", train_head=True)
    data = {t: load_glue(t, "train", source="sample", limit=8) for t in models}
    with pytest.raises(Arrived):
        analysis.train_multitask(models, tokenizer, data, data, epochs=1, progress=False)


def test_inference_gives_rows_in_data_order_on_the_cpu(tokenizer):
    from test_trainer import small_bert

    model = small_bert().eval()
    dev = load_glue("sst2", "dev", source="sample", limit=12)
    out = inference.logits(model, tokenizer, dev, batch_size=5)
    assert out.shape == (12, 2) and out.device.type == "cpu"
    one = tokenizer(dev.text_a[3], return_tensors="pt")
    with torch.no_grad():
        expected = model(**one).logits[0]
    assert torch.allclose(out[3], expected, atol=1e-5)
    assert inference.predictions(model, tokenizer, dev) == out.argmax(-1).tolist()
    with pytest.raises(ValueError, match="list of sentences"):
        inference.logits(model, tokenizer, "one string")


# ---------------------------------------------------------------- notebooks

def notebook_code(path):
    cells = json.loads(Path(path).read_text())["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            # IPython lines (!pip, %magic) are not Python
            source = "".join(cell["source"])
            lines = [line[:len(line) - len(line.lstrip())] + "pass" if line.lstrip().startswith(("!", "%")) else line
                     for line in source.splitlines()]
            yield i, "\n".join(lines)


def direct_model_calls(source: str) -> list:
    """Calls that look like a model's forward on tensors: ``f(**batch)`` or ``f(input_ids=...)``."""
    calls = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            starred = any(k.arg is None for k in node.keywords)
            ids = any(k.arg == "input_ids" for k in node.keywords)
            if starred or ids:
                calls.append(ast.unparse(node)[:60])
    return calls


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_run_models_only_through_device_aware_helpers(path):
    """Notebook cells get predictions through ``hadamard_lite.inference`` (which moves inputs to
    the model's device), never by calling a model on tensors they made on the CPU."""
    # A cell that moves its tensors itself (``.to(...device...)``) is device-correct too, and so are
    # calls on ``input_ids`` made by a notebook helper that returns them on the device (07).
    code = list(notebook_code(path))
    helper_moves_ids = any("input_ids.to(device)" in source for _, source in code)
    found = [(i, call) for i, source in code for call in direct_model_calls(source)
             if not (".to(" in source and "device" in source)
             and not (helper_moves_ids and "input_ids=input_ids" in call)]
    assert not found, (f"{path.name} calls a model directly in cell(s) {found}: use "
                       "hadamard_lite.inference.logits / predictions / mean_pooled, which move inputs to the model's device")


def test_the_notebook_check_catches_the_old_cells():
    old = 'for b in batches(dev, tokenizer):\n    logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits\n'
    assert direct_model_calls(old)
    assert direct_model_calls("out = torch.cat([model(**b).logits for b in dev_batches])")
    assert not direct_model_calls("out = inference.logits(model, tokenizer, dev)")
