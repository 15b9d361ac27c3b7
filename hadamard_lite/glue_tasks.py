"""The nine GLUE tasks: text fields, labels and official metrics, in one table."""
from dataclasses import dataclass


@dataclass(frozen=True)
class GlueTask:
    name: str  # our name, as on the hub: "sst2"
    folder: str  # folder in the classic glue_data/ layout: "SST-2"
    tsv_columns: tuple  # (text_a, text_b or None, label): header names, or column numbers for CoLA
    hub_columns: tuple  # the same fields in the hub dataset nyu-mll/glue
    labels: tuple | None  # label names in hub order (index = label id); None: regression (STS-B)
    metric: str  # the main metric, as reported by GLUE
    dev_files: dict  # split name -> TSV file name
    tsv_width: int | None = None  # fields per line, for files without a header (CoLA)
    score_range: tuple | None = None  # regression only: the smallest and largest score (STS-B: 0 to 5)

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def is_pair(self) -> bool:
        return self.tsv_columns[1] is not None


_DEV = {"train": "train.tsv", "dev": "dev.tsv"}

GLUE_TASKS = {t.name: t for t in [
    GlueTask("cola", "CoLA", (3, None, 1), ("sentence", None, "label"),
             ("unacceptable", "acceptable"), "matthews", _DEV, tsv_width=4),
    GlueTask("sst2", "SST-2", ("sentence", None, "label"), ("sentence", None, "label"),
             ("negative", "positive"), "accuracy", _DEV),
    GlueTask("mrpc", "MRPC", ("#1 String", "#2 String", "Quality"), ("sentence1", "sentence2", "label"),
             ("not_equivalent", "equivalent"), "f1", _DEV),
    GlueTask("stsb", "STS-B", ("sentence1", "sentence2", "score"), ("sentence1", "sentence2", "label"),
             None, "pearson", _DEV, score_range=(0.0, 5.0)),
    GlueTask("qqp", "QQP", ("question1", "question2", "is_duplicate"), ("question1", "question2", "label"),
             ("not_duplicate", "duplicate"), "f1", _DEV),
    GlueTask("mnli", "MNLI", ("sentence1", "sentence2", "gold_label"), ("premise", "hypothesis", "label"),
             ("entailment", "neutral", "contradiction"), "accuracy",
             {"train": "train.tsv", "dev": "dev_matched.tsv", "dev_mismatched": "dev_mismatched.tsv"}),
    GlueTask("qnli", "QNLI", ("question", "sentence", "label"), ("question", "sentence", "label"),
             ("entailment", "not_entailment"), "accuracy", _DEV),
    GlueTask("rte", "RTE", ("sentence1", "sentence2", "label"), ("sentence1", "sentence2", "label"),
             ("entailment", "not_entailment"), "accuracy", _DEV),
    GlueTask("wnli", "WNLI", ("sentence1", "sentence2", "label"), ("sentence1", "sentence2", "label"),
             ("not_entailment", "entailment"), "accuracy", _DEV),
]}

# Hub split names for ours.
HUB_SPLITS = {"train": "train", "dev": "validation", "dev_mismatched": "validation_mismatched"}


def get_task(name: str) -> GlueTask:
    key = name.lower().replace("-", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {name!r}; the tasks are: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]
