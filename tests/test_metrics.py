"""Our metrics agree with scikit-learn and SciPy on random inputs."""
import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as sk

from hadamard_lite.metrics import accuracy, f1, glue_metrics, matthews, pearson, spearman


@pytest.mark.parametrize("seed", range(5))
def test_classification_metrics(seed):
    r = np.random.default_rng(seed)
    y, p = r.integers(0, 2, 200), r.integers(0, 2, 200)
    p[:50] = y[:50]  # some signal
    assert accuracy(p, y) == pytest.approx(sk.accuracy_score(y, p))
    assert f1(p, y) == pytest.approx(sk.f1_score(y, p))
    assert matthews(p, y) == pytest.approx(sk.matthews_corrcoef(y, p))


@pytest.mark.parametrize("seed", range(5))
def test_correlations(seed):
    r = np.random.default_rng(seed)
    y = r.uniform(0, 5, 300).round(1)  # rounding makes ties, which Spearman must average
    p = y + r.normal(0, 1, 300)
    assert pearson(p, y) == pytest.approx(stats.pearsonr(p, y)[0])
    assert spearman(p, y) == pytest.approx(stats.spearmanr(p, y)[0])


def test_degenerate_inputs_do_not_divide_by_zero():
    assert matthews([1, 1, 1], [0, 1, 0]) == 0.0 == sk.matthews_corrcoef([0, 1, 0], [1, 1, 1])
    assert f1([0, 0], [0, 0]) == 0.0


def test_task_metrics_main_metric_first():
    assert list(glue_metrics("cola", [1, 0], [1, 0])) == ["matthews"]
    assert list(glue_metrics("mrpc", [1, 0], [1, 0])) == ["f1", "accuracy"]
    assert list(glue_metrics("stsb", [1.0, 2.0, 3.0], [1.0, 2.5, 2.9])) == ["pearson", "spearman"]
    assert list(glue_metrics("rte", [1, 0], [1, 0])) == ["accuracy"]


def test_predictions_and_labels_of_other_lengths_are_refused():
    # numpy would broadcast one prediction over four labels and score it (F1 1.5 before this check)
    with pytest.raises(ValueError, match="1 predictions for 4 labels; pass one prediction per labelled example"):
        glue_metrics("mrpc", [1], [1, 0, 1, 1])
    with pytest.raises(ValueError, match="0 predictions for 0 labels"):
        glue_metrics("sst2", [], [])
