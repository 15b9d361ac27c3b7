"""GLUE loading from each source, subsets, batching and bad input."""
import collections

import pytest

from hadamard_lite import data as glue
from hadamard_lite.data import SAMPLE_SOURCE, batches, load_glue
from hadamard_lite.glue_tasks import GLUE_TASKS
from hadamard_lite.models import load_tokenizer


@pytest.fixture
def tsv_tree(tmp_path):
    """A small glue_data/ tree in the classic layout, including its quirks."""
    (tmp_path / "SST-2").mkdir()
    (tmp_path / "SST-2" / "train.tsv").write_text(
        "sentence\tlabel\n" + "".join(f"a \"quoted sentence {i} \t{i % 2}\n" for i in range(20)))
    (tmp_path / "CoLA").mkdir()  # no header
    (tmp_path / "CoLA" / "dev.tsv").write_text("gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n")
    (tmp_path / "MRPC").mkdir()  # starts with a byte-order mark
    (tmp_path / "MRPC" / "dev.tsv").write_text(
        "\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA b .\tB a .\n0\t3\t4\tC .\tD .\n", encoding="utf-8")
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\tP .\tH .\tnot_entailment\n")
    (tmp_path / "STS-B").mkdir()
    (tmp_path / "STS-B" / "dev.tsv").write_text(
        "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
        "0\tmain\tf\t2012\t1\tnone\tnone\tA plane.\tAn airplane.\t4.800\n")
    return tmp_path


def test_tsv_source(tsv_tree):
    sst2 = load_glue("sst2", "train", data_dir=tsv_tree)
    assert len(sst2) == 20 and sst2.text_b is None and sst2.labels[:3] == [0, 1, 0]
    assert sst2.text_a[0] == 'a "quoted sentence 0 '  # quotes are text, not CSV quoting
    assert sst2.source.startswith("GLUE TSV") and str(tsv_tree) in sst2.source
    cola = load_glue("cola", "dev", data_dir=tsv_tree)
    assert cola.text_a == ["The cat sat.", "Cat the sat."] and cola.labels == [1, 0]
    mrpc = load_glue("MRPC", "dev", data_dir=tsv_tree)
    assert mrpc.text_b == ["B a .", "D ."] and mrpc.labels == [1, 0]
    assert load_glue("rte", "dev", data_dir=tsv_tree).labels == [1]  # hub order: not_entailment = 1
    assert load_glue("stsb", "dev", data_dir=tsv_tree).labels == [4.8]


def test_glue_dir_environment_variable(tsv_tree, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(tsv_tree))
    assert len(load_glue("sst2")) == 20


def test_a_relative_glue_dir_that_misses_says_to_make_it_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # as in a notebook kernel, which runs in notebooks/
    monkeypatch.setenv("GLUE_DIR", "../shared/glue_data")
    with pytest.raises(FileNotFoundError, match="relative path, read from .*: give GLUE_DIR as an absolute path"):
        load_glue("rte", "dev", source="tsv")


def test_hub_source_with_a_local_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    fake = datasets.Dataset.from_dict({"premise": ["p1", "p2"], "hypothesis": ["h1", "h2"], "label": [2, 0]})
    asked = []
    monkeypatch.setattr(glue, "_load_hub_split", lambda task, split: asked.append((task.name, split)) or fake)
    mnli = load_glue("mnli", "dev", source="hub")
    assert asked == [("mnli", "dev")]
    assert mnli.text_a == ["p1", "p2"] and mnli.text_b == ["h1", "h2"] and mnli.labels == [2, 0]
    assert mnli.source == "hub nyu-mll/glue"


def test_auto_without_glue_dir_and_offline_uses_the_labelled_sample(monkeypatch):
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    for name, task in GLUE_TASKS.items():
        for split in task.dev_files:
            data = load_glue(name, split)
            assert data.source == SAMPLE_SOURCE and "NOT GLUE" in data.source
            assert len(data) > 0 and (data.text_b is not None) == task.is_pair
            if not task.is_regression:
                assert set(data.labels) == set(range(task.num_labels))
    assert load_glue("sst2").text_a == load_glue("sst2").text_a  # always the same


def test_seeded_stratified_limit(glue_dir):
    full = load_glue("sst2", "dev", data_dir=glue_dir)
    small = load_glue("sst2", "dev", data_dir=glue_dir, limit=100, seed=3)
    assert len(small) == 100 and small.labels == load_glue("sst2", "dev", data_dir=glue_dir, limit=100, seed=3).labels
    assert small.text_a != load_glue("sst2", "dev", data_dir=glue_dir, limit=100, seed=4).text_a
    share = collections.Counter(full.labels)[1] / len(full)
    assert abs(collections.Counter(small.labels)[1] / 100 - share) <= 0.01


def test_a_subset_whose_label_shares_round_up_drops_at_random_not_the_last_label():
    three = glue.GlueSplit(GLUE_TASKS["mnli"], "train", "test", [f"s{i}" for i in range(9)], None, [0, 1, 2] * 3)
    seen = collections.Counter(y for seed in range(20) for y in three.subset(glue._seeded_subset(three, 2, seed)).labels)
    assert len(three.subset(glue._seeded_subset(three, 2, 0))) == 2 and set(seen) == {0, 1, 2}


def test_real_glue_row_counts(glue_dir):
    expected = {"cola": (8551, 1043), "sst2": (67349, 872), "mrpc": (3668, 408), "stsb": (5749, 1500),
                "rte": (2490, 277), "wnli": (635, 71)}
    for task, (train, dev) in expected.items():
        assert (len(load_glue(task, "train", glue_dir)), len(load_glue(task, "dev", glue_dir))) == (train, dev)


def test_batches_pad_dynamically_and_are_deterministic():
    data = load_glue("mrpc", "train", source="sample")
    tokenizer = load_tokenizer()
    first = list(batches(data, tokenizer, batch_size=16, shuffle=True, seed=1, epoch=0))
    again = list(batches(data, tokenizer, batch_size=16, shuffle=True, seed=1, epoch=0))
    other = list(batches(data, tokenizer, batch_size=16, shuffle=True, seed=1, epoch=1))
    assert all((a["index"] == b["index"]).all() for a, b in zip(first, again))
    assert any((a["index"] != b["index"]).any() for a, b in zip(first, other))
    seen = sorted(i for b in first for i in b["index"].tolist())
    assert seen == list(range(len(data)))  # every example exactly once
    for b in first:  # padded to the longest in the batch, not to max_length
        assert b["attention_mask"].sum(1).max() == b["input_ids"].shape[1]


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(task="nope"), ValueError, "unknown GLUE task 'nope'.*sst2"),
    (dict(task="sst2", split="test_matched"), ValueError, "no split"),
    (dict(task="sst2", source="web"), ValueError, "unknown source"),
    (dict(task="sst2", limit=0, source="sample"), ValueError, "positive"),
])
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_glue(**kwargs)


def test_task_missing_from_the_directory_names_task_path_and_fix(tsv_tree):
    with pytest.raises(FileNotFoundError, match=r"'qqp'.*QQP/train.tsv.*GLUE_DIR"):
        load_glue("qqp", "train", data_dir=tsv_tree)


BAD_FILES = [  # (task, file in the tree, content, what the message must say)
    ("sst2", "SST-2/dev.tsv", "sentence\tlabel\ngood film\tpositive-ish\n", r"dev.tsv, line 2: label 'positive-ish'"),
    ("sst2", "SST-2/dev.tsv", "sentence\tlabel\ngood film\t1\nbad film\t2\n", r"line 3: label '2' is out of range"),
    ("stsb", "STS-B/dev.tsv", "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"
     "0\tmain\tf\t2012\t1\tnone\tnone\tA plane.\tAn airplane.\t7.5\n", r"line 2: label '7.5'.*0.0 to 5.0"),
    ("sst2", "SST-2/dev.tsv", "text\tlabel\ngood film\t1\n", r"line 1: not a GLUE sst2 file.*header lacks \['sentence'\]"),
    ("rte", "RTE/dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tonly two\n", r"RTE/dev.tsv, line 2: expected 4 .*got 2"),
    ("sst2", "SST-2/dev.tsv", "sentence\tlabel\na\ttab\tinside\t1\n", r"line 2: expected 2 .*got 4"),
    ("cola", "CoLA/dev.tsv", "gj04\t1\t\tThe cat sat.\ngj04\t0\n", r"CoLA/dev.tsv, line 2: expected 4 .*got 2"),
    ("sst2", "SST-2/dev.tsv", "sentence\tlabel\n", r"SST-2/dev.tsv has no examples \(only a header\)"),
    ("cola", "CoLA/dev.tsv", "", r"CoLA/dev.tsv has no examples"),
    ("sst2", "SST-2/dev.tsv", "", r"SST-2/dev.tsv is empty"),
    ("sst2", "SST-2/dev.tsv", b"sentence\tlabel\nfine\t1\n\x89PNG\xff\xfe\t0\n", r"SST-2/dev.tsv, line 3: not UTF-8 text"),
]


@pytest.mark.parametrize("task,name,content,match", BAD_FILES)
def test_malformed_files_name_the_file_and_line(tsv_tree, task, name, content, match):
    path = tsv_tree / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=match):
        load_glue(task, "dev", data_dir=tsv_tree)


def test_own_data_as_a_glue_split_trains():
    import hadamard_lite as hl
    from hadamard_lite.data import GlueSplit
    from hadamard_lite.glue_tasks import get_task
    from hadamard_lite.trainer import TrainConfig, Trainer
    from test_trainer import small_bert

    train = GlueSplit(get_task("sst2"), "train", "my reviews", ["great phone", "broke in a day"] * 8, None, [1, 0] * 8)
    model = small_bert()
    hl.add_hadamard_adapter(model)
    hl.freeze_for_stage(model, "adapter", train_head=True)
    result = Trainer(model, hl.load_tokenizer(), train, train, TrainConfig(epochs=1, progress=False)).fit()
    assert 0.0 <= result["best_metric"] <= 1.0 and len(result["history"]) == 1
