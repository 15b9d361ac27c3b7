"""The official GLUE metrics, in NumPy (tests check them against scikit-learn and SciPy)."""
import numpy as np
from scipy.stats import rankdata

from .glue_tasks import get_task


def accuracy(predictions, labels) -> float:
    return float(np.mean(np.asarray(predictions) == np.asarray(labels)))


def f1(predictions, labels) -> float:
    """F1 of the positive class (label 1), as GLUE reports for MRPC and QQP."""
    p, y = np.asarray(predictions) == 1, np.asarray(labels) == 1
    tp = np.sum(p & y)
    return float(2 * tp / (np.sum(p) + np.sum(y))) if (np.sum(p) + np.sum(y)) else 0.0


def matthews(predictions, labels) -> float:
    """Matthews correlation for binary labels (CoLA); 0 when a prediction or label is constant."""
    p, y = np.asarray(predictions) == 1, np.asarray(labels) == 1
    tp, tn = float(np.sum(p & y)), float(np.sum(~p & ~y))
    fp, fn = float(np.sum(p & ~y)), float(np.sum(~p & y))
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator else 0.0


def pearson(predictions, labels) -> float:
    x, y = np.asarray(predictions, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt(np.sum(x * x) * np.sum(y * y))
    return float(np.sum(x * y) / denominator) if denominator else 0.0


def spearman(predictions, labels) -> float:
    """Pearson correlation of the ranks (ties get their average rank)."""
    return pearson(rankdata(predictions), rankdata(labels))


METRICS = {"accuracy": accuracy, "f1": f1, "matthews": matthews, "pearson": pearson, "spearman": spearman}
TASK_METRICS = {"cola": ["matthews"], "mrpc": ["f1", "accuracy"], "qqp": ["f1", "accuracy"],
                "stsb": ["pearson", "spearman"]}


def glue_metrics(task: str, predictions, labels) -> dict:
    """All GLUE metrics of ``task``; the first one is the task's main metric."""
    names = TASK_METRICS.get(get_task(task).name, ["accuracy"])
    n, m = len(predictions), len(labels)
    if n != m or n == 0:  # numpy would broadcast one prediction over every label and score it without a word
        raise ValueError(f"{task}: {n} predictions for {m} labels; pass one prediction per labelled example")
    return {name: METRICS[name](predictions, labels) for name in names}


def main_metric(task: str) -> str:
    return get_task(task).metric
