"""Accuracy, macro-F1, per-label figures and the confusion matrix, against numbers worked out by hand."""

from __future__ import annotations

import pytest

from charrnn.labelled.metrics import confusion_matrix, ranked, report


def test_report_against_a_hand_computed_confusion_matrix() -> None:
    # true:      a a a b b c     predicted: a b a b c c
    #               predicted a  b  c
    #   true a                2  1  0      precision a = 2/2, recall a = 2/3, F1 = 2·1·(2/3)/(5/3) = 0.8
    #   true b                0  1  1      precision b = 1/2, recall b = 1/2, F1 = 0.5
    #   true c                0  0  1      precision c = 1/2, recall c = 1/1, F1 = 2·(1/2)·1/(3/2) = 2/3
    # accuracy = 4/6; macro-F1 = (0.8 + 0.5 + 2/3) / 3
    true, predicted = [0, 0, 0, 1, 1, 2], [0, 1, 0, 1, 2, 2]
    result = report(true, predicted, ["a", "b", "c"])
    assert result.confusion == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert result.accuracy == pytest.approx(4 / 6)
    assert result.macro_f1 == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    rows = {s.label: (s.precision, s.recall, s.f1, s.support) for s in result.per_label}
    assert rows["a"] == pytest.approx((1.0, 2 / 3, 0.8, 3))
    assert rows["b"] == pytest.approx((0.5, 0.5, 0.5, 2))
    assert rows["c"] == pytest.approx((0.5, 1.0, 2 / 3, 1))
    assert result.examples == 6 and result.to_dict()["confusion"] == result.confusion


def test_labels_neither_present_nor_predicted_do_not_count_in_macro_f1() -> None:
    # label c never occurs and is never predicted: macro-F1 averages a and b only;
    # label b never occurs but is predicted once: it counts, with F1 0
    result = report([0, 0, 0], [0, 0, 1], ["a", "b", "c"])
    f1_a = 2 * 1.0 * (2 / 3) / (1.0 + 2 / 3)
    assert result.macro_f1 == pytest.approx((f1_a + 0.0) / 2)
    assert [s.support for s in result.per_label] == [3, 0, 0]
    assert report([], [], ["a", "b"]).accuracy == 0.0


def test_confusion_rows_are_true_labels() -> None:
    assert confusion_matrix([1, 1], [0, 1], 2) == [[0, 0], [1, 1]]


def test_ranked_classification() -> None:
    result = ranked("Ivanov", ["English", "Russian", "Czech"], [0.2, 0.7, 0.1])
    assert result.label == "Russian" and result.top(2) == [("Russian", 0.7), ("English", 0.2)]
    assert result.to_dict(1) == {"text": "Ivanov", "labels": [{"label": "Russian", "probability": 0.7}]}
