import numpy as np

from fmtrain.analysis import figures, tables
from fmtrain.learning import classification_report
from fmtrain.learning.data import CLASS_NAMES


def test_scores_match_an_independent_computation():
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 10
    probabilities = rng.dirichlet(np.ones(10), size=200)
    probabilities[np.arange(150), labels[:150]] += 2.0  # 150 right, the rest at random
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    result = classification_report.score(probabilities, labels)
    predicted = probabilities.argmax(axis=1)
    assert result.scores.test_accuracy == np.mean(predicted == labels)
    loss = -np.mean(np.log(probabilities[np.arange(200), labels]))
    assert abs(result.scores.test_loss - loss) < 1e-9
    f1 = []
    for c in range(10):
        tp = np.sum((predicted == c) & (labels == c))
        precision, recall = tp / max(1, np.sum(predicted == c)), tp / np.sum(labels == c)
        f1.append(0 if tp == 0 else 2 * precision * recall / (precision + recall))
    assert abs(result.scores.test_macro_f1 - np.mean(f1)) < 1e-12
    assert result.confusion.sum() == 200 and np.trace(result.confusion) == np.sum(predicted == labels)
    assert tables.per_class_csv(result.per_class).splitlines()[1].startswith(f"{CLASS_NAMES[0]},")


def test_figures_name_the_classes():
    labels = np.arange(20) % 10
    probabilities = np.eye(10)[(labels + 1) % 10]  # every prediction wrong
    result = classification_report.score(probabilities, labels)
    drawn = figures.evaluation_figures(result, np.zeros((20, 28, 28)), labels)
    assert set(drawn) == {"confusion-matrix.png", "misclassified.png"}
    ticks = [t.get_text() for t in drawn["confusion-matrix.png"].axes[0].get_xticklabels()]
    assert ticks == list(CLASS_NAMES)
    titles = [a.get_title() for a in drawn["misclassified.png"].axes if a.get_title()]
    assert len(titles) == 20 and titles[0] == f"{CLASS_NAMES[labels[0]]}\n-> {CLASS_NAMES[(labels[0] + 1) % 10]}"
