"""GLUE data: load a split, take a seeded subset, tokenize once, and batch by length.

    >>> train = load_glue("sst2", "train", limit=2000)       # GLUE_DIR, else the hub, else the sample
    >>> print(train.source)                                  # always says where the data came from

Sources, in order: ``data_dir`` or the ``GLUE_DIR`` environment variable (the classic
``glue_data/`` TSV layout of the original BERT scripts), the hub dataset ``nyu-mll/glue``
through ``datasets`` when online, and a small built-in sample (``sample_data.py``). An explicit
directory that lacks the task is an error, never a silent fallback.
"""
import csv
import io
import os
import random
import socket
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .glue_tasks import GlueTask, HUB_SPLITS, get_task
from .sample_data import sample_examples

SOURCES = ("auto", "tsv", "hub", "sample")
SAMPLE_SOURCE = "built-in sample (NOT GLUE: template sentences for trying the code)"


@dataclass
class GlueSplit:
    """One split of one task: parallel lists of texts and labels, plus where they came from."""
    task: GlueTask
    split: str
    source: str
    text_a: list
    text_b: list | None
    labels: list
    _encoded: dict = field(default_factory=dict, repr=False)  # tokenizer key -> token ids

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices) -> "GlueSplit":
        pick = lambda xs: None if xs is None else [xs[i] for i in indices]
        return GlueSplit(self.task, self.split, self.source, pick(self.text_a), pick(self.text_b), pick(self.labels))


# ---------------------------------------------------------------- reading the sources

def _read_tsv(path: Path, task: GlueTask) -> tuple:
    a, b, y = task.tsv_columns
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # utf-8-sig: MRPC starts with a byte-order mark
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); GLUE files are "
                         f"UTF-8 TSV: check that this is the {task.folder}/{path.name} of glue_data, "
                         "not a binary or differently encoded file") from None
    # QUOTE_NONE: GLUE sentences contain unmatched quote characters.
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    first_line = 1
    if isinstance(a, str):  # a header names the columns
        if not rows:
            raise ValueError(f"{path} is empty: expected a header line and one example per line; "
                             f"download the {task.folder} folder of glue_data again")
        header, rows, first_line = rows[0], rows[1:], 2
        missing = [c for c in (a, b, y) if c is not None and c not in header]
        if missing:
            raise ValueError(f"{path}, line 1: not a GLUE {task.name} file: its header lacks {missing} "
                             f"(found {header[:10]}); check that GLUE_DIR points at a glue_data/ folder")
        width = len(header)
        a, b, y = (None if c is None else header.index(c) for c in (a, b, y))
    else:
        width = task.tsv_width
    if not rows:
        raise ValueError(f"{path} has no examples (only {'a header' if first_line == 2 else 'nothing'}); "
                         f"a {task.name} file has one example per line: download it again or fill it")
    texts_a, texts_b, labels = [], [] if b is not None else None, []
    for line, row in enumerate(rows, start=first_line):
        if len(row) != width:
            raise ValueError(f"{path}, line {line}: expected {width} tab-separated fields"
                             f"{' (as in the header)' if first_line == 2 else ''}, got {len(row)}; "
                             "the file is malformed (a stray tab or a cut line?)")
        texts_a.append(row[a])
        if b is not None:
            texts_b.append(row[b])
        labels.append(_label(task, row[y], path, line))
    return texts_a, texts_b, labels


def _label(task: GlueTask, raw: str, path, line) -> float | int:
    try:
        if task.is_regression:
            low, high = task.score_range
            value = float(raw)
            if low <= value <= high:  # also refuses nan
                return value
            raise ValueError
        if raw in task.labels:
            return task.labels.index(raw)
        value = int(raw)
        if 0 <= value < task.num_labels:
            return value
    except ValueError:
        pass
    accepted = (f"a score from {task.score_range[0]} to {task.score_range[1]}" if task.is_regression
                else f"one of {list(task.labels)} or 0..{task.num_labels - 1}")
    raise ValueError(f"{path}, line {line}: label {raw!r} is out of range: a {task.name} label is {accepted}; "
                     "the file is malformed")


def _tsv_path(task: GlueTask, split: str, data_dir: Path) -> Path:
    path = Path(data_dir) / task.folder / task.dev_files[split]
    if not path.is_file():
        # A relative GLUE_DIR resolves against the current directory, which in a notebook kernel is notebooks/.
        relative = (f" (a relative path, read from {Path.cwd()}: give GLUE_DIR as an absolute path)"
                    if not Path(data_dir).is_absolute() else "")
        raise FileNotFoundError(
            f"GLUE task {task.name!r} split {split!r} not found: looked for {path}{relative}. "
            f"Put the {task.folder}/ folder of glue_data there, point GLUE_DIR (or data_dir) at a glue_data/ "
            f"folder that has it, or use source='sample' to try the code without GLUE.")
    return path


def hub_available() -> bool:
    """True unless offline mode is set or huggingface.co cannot be reached within 3 s."""
    if os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1":
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=3).close()
        return True
    except OSError:
        return False


def _load_hub_split(task: GlueTask, split: str):
    """The hub dataset ``nyu-mll/glue`` (a ``datasets.Dataset``); replaced in tests."""
    import datasets  # imported here: the rest of the package does not need it
    hub_split = "validation_matched" if (task.name, split) == ("mnli", "dev") else HUB_SPLITS[split]
    return datasets.load_dataset("nyu-mll/glue", task.name, split=hub_split)


def _read_hub(task: GlueTask, split: str) -> tuple:
    try:
        dataset = _load_hub_split(task, split)
    except ImportError as err:
        raise ValueError(f"the hub source needs the datasets package ({err}); pip install datasets, "
                         "or use a glue_data/ folder (data_dir, GLUE_DIR) or source='sample'") from err
    except Exception as err:  # datasets raises many kinds (connection, cache, offline mode)
        first_line = (str(err).strip().splitlines() or [""])[0][:200]
        raise ValueError(f"could not load nyu-mll/glue {task.name} {split} from the hub "
                         f"({type(err).__name__}: {first_line}); check the connection, or use a glue_data/ "
                         "folder (data_dir, GLUE_DIR) or source='sample'") from err
    a, b, y = task.hub_columns
    return list(dataset[a]), (list(dataset[b]) if b else None), list(dataset[y])


def load_glue(task: str, split: str = "train", data_dir=None, source: str = "auto",
              limit: int | None = None, seed: int = 0) -> GlueSplit:
    """Load ``split`` ("train", "dev", or for MNLI "dev_mismatched") of a GLUE ``task``.

    ``limit`` keeps a seeded random subset of that many examples (stratified by label for
    classification, so small subsets keep the class balance).
    """
    info = get_task(task)
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; use one of {SOURCES}")
    if split not in info.dev_files:
        raise ValueError(f"task {info.name} has no split {split!r}; its splits are {list(info.dev_files)}")
    data_dir = data_dir or os.environ.get("GLUE_DIR")
    if source == "tsv" or (source == "auto" and data_dir):
        if not data_dir:
            raise ValueError("source='tsv' needs data_dir or the GLUE_DIR environment variable")
        path = _tsv_path(info, split, data_dir)
        texts_a, texts_b, labels = _read_tsv(path, info)
        origin = f"GLUE TSV {path}"
    elif source == "hub" or (source == "auto" and hub_available()):
        texts_a, texts_b, labels = _read_hub(info, split)
        origin = "hub nyu-mll/glue"
    else:
        examples = sample_examples(info.name, split)
        texts_a = [e[0] for e in examples]
        texts_b = [e[1] for e in examples] if info.is_pair else None
        labels = [e[2] for e in examples]
        origin = SAMPLE_SOURCE
    data = GlueSplit(info, split, origin, texts_a, texts_b, labels)
    if not len(data):
        raise ValueError(f"{origin} has no examples for {info.name} {split}; use another source or split")
    return data if limit is None or limit >= len(data) else data.subset(_seeded_subset(data, limit, seed))


def _seeded_subset(data: GlueSplit, limit: int, seed: int) -> list:
    """Indices of ``limit`` examples; for classification, each label keeps its share."""
    if limit <= 0:
        raise ValueError(f"limit must be a positive number of examples, got {limit}")
    r = random.Random(seed)
    if data.task.is_regression:
        return sorted(r.sample(range(len(data)), limit))
    by_label = {}
    for i, y in enumerate(data.labels):
        by_label.setdefault(y, []).append(i)
    chosen = []
    for y, indices in sorted(by_label.items()):
        share = round(limit * len(indices) / len(data))
        chosen += r.sample(indices, min(share, len(indices)))
    if len(chosen) > limit:  # the shares rounded up (three equal labels, limit 2): drop at random, not the last label
        return sorted(r.sample(chosen, limit))
    rest = sorted(set(range(len(data))) - set(chosen))
    return sorted(chosen + r.sample(rest, limit - len(chosen)))


# ---------------------------------------------------------------- tokens and batches

def encode(data: GlueSplit, tokenizer, max_length: int = 128) -> list:
    """Token ids of every example (no padding), computed once per tokenizer and length."""
    key = (tokenizer.name_or_path, len(tokenizer), max_length)
    if key not in data._encoded:
        pairs = (data.text_a,) if data.text_b is None else (data.text_a, data.text_b)
        data._encoded[key] = tokenizer(*pairs, truncation=True, max_length=max_length)["input_ids"]
    return data._encoded[key]


def pad_ids(rows: list, pad: int) -> tuple:
    """Token id lists of different lengths -> (input_ids, attention_mask), right-padded to the longest."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for row, ids in enumerate(rows):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        mask[row, :len(ids)] = 1
    return input_ids, mask


def batches(data: GlueSplit, tokenizer, batch_size: int = 32, max_length: int = 128,
            shuffle: bool = False, seed: int = 0, epoch: int = 0):
    """Padded batches (dicts of tensors, ``labels`` included), grouped by length.

    Examples of similar length go together, so padding wastes little compute. With ``shuffle``
    the grouping is random within chunks of 50 batches and the batch order is random, both
    decided by ``seed`` and ``epoch`` alone: the same call always gives the same batches.

    No ``token_type_ids``: a pair is one sequence ``[CLS] a [SEP] b [SEP]`` with segment 0 throughout
    (the bundled all-MiniLM-L6-v2 was last trained as a sentence encoder, where every token is segment 0).
    Training, evaluation and ``predict`` all do the same, so scores are consistent, but outputs differ
    from ``model(**tokenizer(a, b))``, which marks ``b`` as segment 1.
    """
    ids = encode(data, tokenizer, max_length)
    order = list(range(len(ids)))
    if shuffle:
        r = random.Random(seed * 100_003 + epoch)
        r.shuffle(order)
        chunk = batch_size * 50
        order = [i for s in range(0, len(order), chunk) for i in sorted(order[s:s + chunk], key=lambda i: len(ids[i]))]
        groups = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
        r.shuffle(groups)
    else:  # evaluation: sorted by length, order does not matter
        order.sort(key=lambda i: len(ids[i]))
        groups = [order[s:s + batch_size] for s in range(0, len(order), batch_size)]
    label_dtype = torch.float32 if data.task.is_regression else torch.long
    pad = tokenizer.pad_token_id or 0
    for group in groups:
        input_ids, mask = pad_ids([ids[i] for i in group], pad)
        yield {"input_ids": input_ids, "attention_mask": mask,
               "labels": torch.tensor([data.labels[i] for i in group], dtype=label_dtype), "index": torch.tensor(group)}
