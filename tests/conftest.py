import os
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

ARCH_TYPES = ["bert", "roberta", "xlm-roberta", "camembert", "electra", "deberta", "deberta-v2",
              "ernie", "distilbert", "albert", "mpnet"]


def tiny_config(model_type: str, num_labels: int = 3):
    if model_type == "distilbert":
        kw = dict(dim=32, n_layers=3, n_heads=2, hidden_dim=37)
    else:
        kw = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=37)
    if model_type == "albert":
        kw["embedding_size"] = 16
    # Dropout off so that two forward passes can be compared exactly.
    return AutoConfig.for_model(model_type, vocab_size=99, num_labels=num_labels, max_position_embeddings=64,
                                hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, dropout=0.0,
                                attention_dropout=0.0, seq_classif_dropout=0.0, classifier_dropout=0.0,
                                **kw)


def tiny_model(model_type: str, head: bool = True, seed: int = 0):
    """A small random model; the same seed gives the same weights."""
    torch.manual_seed(seed)
    config = tiny_config(model_type)
    model = (AutoModelForSequenceClassification if head else AutoModel).from_config(config)
    return model.eval()


def tiny_batch(seed: int = 1, batch: int = 4, length: int = 10):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, 99, (batch, length), generator=g)
    mask = torch.ones_like(input_ids)
    mask[0, 7:] = 0  # one padded row, so masking is exercised
    return {"input_ids": input_ids, "attention_mask": mask}


def output_of(model, batch):
    with torch.no_grad():
        out = model(**batch)
    return out.logits if hasattr(out, "logits") else out.last_hidden_state


@pytest.fixture
def glue_dir():
    """The real GLUE data when it is beside the project (as in CI), else skip."""
    path = Path(os.environ.get("GLUE_DIR", Path(__file__).resolve().parents[2] / "shared" / "glue_data"))
    if not (path / "SST-2" / "dev.tsv").is_file():
        pytest.skip(f"real GLUE data not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A small random BERT saved as a model folder, with the bundled tokenizer: the command line
    trains it on the built-in sample in seconds (dropout stays on, so resuming must restore RNG)."""
    from hadamard_lite.models import load_tokenizer
    torch.manual_seed(0)
    config = AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=37, vocab_size=30522)
    path = tmp_path_factory.mktemp("tiny-bert")
    AutoModelForSequenceClassification.from_config(config).save_pretrained(path)
    load_tokenizer().save_pretrained(path)
    return path


def random_minilm_adapters(root, specs, seed: int):
    """Random adapters on the bundled MiniLM, saved with ``save_adapter``. ``specs``: (name, layers,
    num_labels). Returns (folders, models): each task's adapter folder and its own adapted model."""
    import hadamard_lite as hl
    g = torch.Generator().manual_seed(seed)
    folders, models = {}, {}
    for name, layers, num_labels in specs:
        model = hl.load_model(num_labels=num_labels).eval()
        hl.add_hadamard_adapter(model, layers)
        hl.freeze_for_stage(model, "adapter", train_head=True)
        with torch.no_grad():
            for p in [p for p in model.parameters() if p.requires_grad]:
                p.add_(0.2 * torch.randn(p.shape, generator=g))
        folders[name] = hl.save_adapter(model, Path(root) / name)
        models[name] = model
    return folders, models
