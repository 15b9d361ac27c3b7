"""Bad input: a clear error, and the model left exactly as it was."""
import json

import pytest
import torch
from transformers import AutoConfig, AutoModel

import hadamard_lite as hl
from conftest import output_of, tiny_batch, tiny_model


def snapshot(model):
    return ({n: type(m) for n, m in model.named_modules()},
            {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()})


def same(a, b):
    return a[0] == b[0] and a[1].keys() == b[1].keys() and all(
        torch.equal(a[1][n][0], b[1][n][0]) and a[1][n][1] == b[1][n][1] for n in a[1])


def test_unsupported_model_names_type_and_lists_supported():
    model = AutoModel.from_config(AutoConfig.for_model("gpt2", n_embd=16, n_layer=1, n_head=2, vocab_size=50))
    with pytest.raises(ValueError, match=r"'gpt2'.*bert.*distilbert.*mpnet"):
        hl.add_hadamard_adapter(model)


def test_injecting_twice_is_refused_and_changes_nothing():
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model, layers=[1])
    before = snapshot(model)
    with pytest.raises(ValueError, match="already has Hadamard adapters"):
        hl.add_hadamard_adapter(model)
    assert same(before, snapshot(model))


@pytest.mark.parametrize("layers,error", [([0, 3], IndexError), ([-4], IndexError), ([1, -2], ValueError),
                                          (["0"], TypeError)])
def test_bad_layer_indices_change_nothing(layers, error):
    model = tiny_model("bert")  # 3 layers
    before = snapshot(model)
    with pytest.raises(error):
        hl.add_hadamard_adapter(model, layers=layers)
    assert same(before, snapshot(model))


def test_out_of_range_message_says_the_range():
    with pytest.raises(IndexError, match="3 layers.*-3 to 2"):
        hl.add_hadamard_adapter(tiny_model("bert"), layers=[5])


def test_unknown_stage_and_stage_without_adapters():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match="unknown stage"):
        hl.freeze_for_stage(model, "lora")
    with pytest.raises(ValueError, match="add_hadamard_adapter"):
        hl.freeze_for_stage(model, "adapter")
    with pytest.raises(ValueError, match="task head"):
        hl.freeze_for_stage(tiny_model("bert", head=False), "head")
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter", parts="bias")  # one part given as a string, not split into letters
    assert [n for n, p in model.named_parameters() if p.requires_grad and "hadamard" in n] and all(
        n.endswith("bias") for n, p in model.named_parameters() if p.requires_grad and "hadamard" in n)
    hl.merge_adapter(model)
    with pytest.raises(ValueError, match="merged into its weights: call unmerge_adapter"):
        hl.freeze_for_stage(model, "adapter")


def test_a_model_folder_given_with_a_tilde_is_found(monkeypatch, tmp_path):
    from hadamard_lite.models import model_path
    monkeypatch.setenv("HOME", str(tmp_path))
    assert model_path("~/bert") == str(tmp_path / "bert")
    monkeypatch.setenv("HADAMARD_LITE_MODEL", "~/local-minilm")
    assert model_path(None) == str(tmp_path / "local-minilm")
    assert model_path("bert-base-uncased") == "bert-base-uncased"  # a hub id stays as it is


def test_merge_and_unmerge_misuse():
    model = tiny_model("bert")
    with pytest.raises(ValueError, match="no unmerged"):
        hl.merge_adapter(model)
    with pytest.raises(ValueError, match="no merged"):
        hl.unmerge_adapter(model)


@pytest.fixture
def saved(tmp_path):
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model, layers=[0, 1])
    hl.save_adapter(model, tmp_path / "a")
    return tmp_path / "a"


def check_load_fails(model, directory, match, error=ValueError):
    before = snapshot(model)
    with pytest.raises(error, match=match):
        hl.load_adapter(model, directory)
    assert same(before, snapshot(model))


def test_load_wrong_model_type_names_both_sides(saved):
    check_load_fails(tiny_model("roberta"), saved, r"'bert'.*'roberta'")


def test_load_wrong_hidden_size_names_both_sides(saved):
    torch.manual_seed(0)
    config = AutoConfig.for_model("bert", hidden_size=48, num_hidden_layers=3, num_attention_heads=2,
                                  intermediate_size=37, vocab_size=99, num_labels=3)
    from transformers import AutoModelForSequenceClassification
    check_load_fails(AutoModelForSequenceClassification.from_config(config), saved, "hidden size 32.*hidden size 48")


def test_load_into_model_with_other_layers(saved):
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model, layers=[2])
    check_load_fails(model, saved, r"layers \[0, 1\].*layers \[2\]")


def test_load_into_model_with_too_few_layers(tmp_path):
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model, layers=[2])
    hl.save_adapter(model, tmp_path / "a")
    torch.manual_seed(0)
    config = AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=37, vocab_size=99, num_labels=3)
    from transformers import AutoModelForSequenceClassification
    check_load_fails(AutoModelForSequenceClassification.from_config(config), tmp_path / "a", "only 2 layers")


def test_load_head_of_other_shape_rolls_back_injection(tmp_path):
    model = tiny_model("bert")
    hl.add_hadamard_adapter(model)
    hl.save_adapter(model, tmp_path / "a")
    torch.manual_seed(0)
    other = tiny_model("bert")
    other.config.num_labels = 2
    other.classifier = torch.nn.Linear(32, 2)
    check_load_fails(other, tmp_path / "a", r"classifier.weight: file has shape \(3, 32\), model has \(2, 32\)")
    assert hl.adapted_layers(other) == []


def test_adapter_saved_with_a_head_into_a_bare_encoder_and_back_says_which(saved, tmp_path):
    check_load_fails(tiny_model("bert", head=False), saved, r"saved with a task head, but this model has none; "
                     r"load it into a model with a task head: load_model\(num_labels=3\)")
    bare = tiny_model("bert", head=False)
    hl.add_hadamard_adapter(bare, layers=[0])
    hl.save_adapter(bare, tmp_path / "bare")
    check_load_fails(tiny_model("bert"), tmp_path / "bare", "saved without a task head, but this model has one")


def test_missing_and_corrupt_files(saved, tmp_path):
    model = tiny_model("bert")
    check_load_fails(model, tmp_path / "nowhere", "no adapter config", FileNotFoundError)
    (saved / "adapter_model.safetensors").write_bytes(b"not a safetensors file at all")
    check_load_fails(model, saved, "corrupt")
    (saved / "adapter_model.safetensors").unlink()
    check_load_fails(model, saved, "no adapter weights", FileNotFoundError)
    (saved / "adapter_config.json").write_text("{ broken")
    check_load_fails(model, saved, "not valid JSON")
    (saved / "adapter_config.json").write_text(json.dumps({"model_type": "bert"}))
    check_load_fails(model, saved, "lacks")


def test_a_config_edited_to_no_layers_is_refused(saved):
    config = json.loads((saved / "adapter_config.json").read_text())
    for layers in (None, [], ["0"], [-1]):
        (saved / "adapter_config.json").write_text(json.dumps({**config, "layers_to_transform": layers}))
        check_load_fails(tiny_model("bert"), saved, "not a list of layer numbers")


def test_save_without_adapters_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no \\(unmerged\\) Hadamard adapters"):
        hl.save_adapter(tiny_model("bert"), tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_save_is_atomic_and_leaves_no_temporary_files(saved):
    assert sorted(p.name for p in saved.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]


def test_saved_config_and_groups(saved):
    config = json.loads((saved / "adapter_config.json").read_text())
    assert config["layers_to_transform"] == [0, 1] and config["groups"] == ["adapter", "layer_norm", "head"]
    assert config["model_type"] == "bert" and config["hidden_size"] == 32
    assert config["peft_type"] == "HADAMARD" and config["task_type"] == "SEQ_CLS"
    assert "layers" not in config and "base_model" not in config  # PEFT's names, not ours
    from safetensors.torch import load_file
    names = set(load_file(saved / "adapter_model.safetensors"))
    assert "bert.encoder.layer.0.attention.output.dense.hadamard.bias" in names  # biases are kept
    assert "bert.encoder.layer.1.attention.output.LayerNorm.bias" in names
    assert "bert.encoder.layer.2.attention.output.LayerNorm.weight" not in names  # not adapted
    assert {"classifier.weight", "classifier.bias"} <= names
    assert len(names) == 2 * 2 + 2 * 2 + 2


def test_bundled_model_is_recorded_by_its_hub_id_not_its_install_folder(tmp_path):
    model = hl.load_model(num_labels=2)
    hl.add_hadamard_adapter(model, layers=[0])
    hl.save_adapter(model, tmp_path / "a")
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"


@pytest.mark.parametrize("task", ["sst2", "stsb"])
def test_adapter_files_with_the_older_keys_still_load(task):
    """tests/data/legacy_adapters was written (by an early pattern study) before the PEFT-style keys, with
    the bundled model's install folder as its base model: it loads into the bundled model without a warning."""
    import warnings
    from pathlib import Path
    from safetensors.torch import load_file
    directory = Path(__file__).resolve().parent / "data" / "legacy_adapters" / task
    old = json.loads((directory / "adapter_config.json").read_text())
    assert "layers" in old and "base_model" in old and old["base_model"].startswith("/")
    model = hl.load_model(num_labels=old["num_labels"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old absolute path is the bundled copy: no name warning
        hl.load_adapter(model, directory)
    assert hl.adapted_layers(model) == old["layers"]
    saved = load_file(directory / "adapter_model.safetensors")
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], t) for n, t in saved.items())


def named(model, name):
    model.config._name_or_path = name  # what from_pretrained records
    return model


def test_adapter_loaded_into_another_checkpoint_of_the_same_architecture_warns(tmp_path):
    model = named(tiny_model("bert"), "org/checkpoint-a")
    hl.add_hadamard_adapter(model)
    hl.save_adapter(model, tmp_path / "a")
    with pytest.warns(UserWarning, match=r"trained on 'org/checkpoint-a' but this model is 'org/checkpoint-b'.*shapes match"):
        hl.load_adapter(named(tiny_model("bert", seed=1), "org/checkpoint-b"), tmp_path / "a")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hl.load_adapter(named(tiny_model("bert", seed=1), "org/checkpoint-a"), tmp_path / "a")  # same name: silent


def test_adapter_loaded_into_another_model_of_other_shapes_is_refused_naming_both(tmp_path):
    model = named(tiny_model("bert"), "org/small")
    hl.add_hadamard_adapter(model)
    hl.save_adapter(model, tmp_path / "a")
    other = named(tiny_model("bert"), "org/other-head")
    other.config.num_labels = 2
    other.classifier = torch.nn.Linear(32, 2)
    check_load_fails(other, tmp_path / "a", r"trained on 'org/small' but this model is 'org/other-head'.*shape")
    config = AutoConfig.for_model("bert", hidden_size=48, num_hidden_layers=3, num_attention_heads=2,
                                  intermediate_size=37, vocab_size=99, num_labels=3)
    from transformers import AutoModelForSequenceClassification
    wider = named(AutoModelForSequenceClassification.from_config(config), "org/wide")
    check_load_fails(wider, tmp_path / "a", r"trained on 'org/small' but this model is 'org/wide'.*hidden size 48")


def test_two_stage_refuses_layers_other_than_the_adapters_already_in():
    from hadamard_lite.trainer import train_two_stage
    model = tiny_model("bert")  # 3 layers
    hl.add_hadamard_adapter(model, layers=[0])
    with pytest.raises(ValueError, match=r"already has adapters on layers \[0\]"):
        train_two_stage(model, None, None, layers=[1, 2])
