"""Metrics of a run's predictions: accuracy and macro scores of an evaluation, and per-class
precision / recall / F1 and the confusion matrix of the test predictions."""

from __future__ import annotations

from typing import Any


def classification_metrics(labels: list[int], predictions: list[int]) -> dict[str, float]:
    """Accuracy, and macro-averaged F1, precision and recall (fractions)."""
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    precision, recall, f1, _ = precision_recall_fscore_support(
        labels, predictions, average="macro", zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(labels, predictions)),
        "macro_f1": float(f1),
        "precision": float(precision),
        "recall": float(recall),
    }


def class_metrics(label_names: list[str], gold: list[int], predicted: list[int]) -> dict[str, Any]:
    """The record's class_metrics: per class (by its original label value) precision, recall,
    F1 (fractions) and support (test examples), and the confusion matrix (rows: gold class,
    columns: predicted class, in label_names order)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    ids = list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        gold, predicted, labels=ids, zero_division=0
    )
    return {
        "label_names": list(label_names),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "confusion_matrix": confusion_matrix(gold, predicted, labels=ids).tolist(),
    }
