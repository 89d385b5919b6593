"""Labels feed back: propose a threshold from reviewed events and samples at an accepted false-alarm rate."""

from __future__ import annotations

from typing import Any

import numpy as np

from oddeye.core.errors import InputError, require_range
from oddeye.core.metrics import threshold_at_fpr
from oddeye.store.api import Store


def labelled_scores(store: Store, run_id: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(true-anomaly scores, false-alarm scores, number unsure) of a run, the newest label per item counting."""
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for lab in sorted(store.labels(run_id), key=lambda d: d["id"]):
        key = ("event", lab["event_id"]) if lab["event_id"] is not None else ("sample", lab["sample_pk"])
        latest[key] = lab
    pos = [d["score"] for d in latest.values() if d["label"] == "true_anomaly" and d["score"] is not None]
    neg = [d["score"] for d in latest.values() if d["label"] == "false_alarm" and d["score"] is not None]
    unsure = sum(d["label"] == "unsure" for d in latest.values())
    return np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64), unsure


def suggest_threshold(store: Store, run_id: int, max_false_alarm_rate: float = 0.05) -> dict[str, Any]:
    """The lowest threshold at which at most `max_false_alarm_rate` of the labelled false alarms still fire.

    Returns threshold, counts of labels, and how many true anomalies / false alarms the threshold keeps.
    """
    require_range(max_false_alarm_rate, "--max-false-alarm-rate", 0.0, 1.0)
    store.run(run_id)
    pos, neg, unsure = labelled_scores(store, run_id)
    if pos.size + neg.size == 0:
        raise InputError(f"run {run_id} has no events or samples labelled true_anomaly / false_alarm",
                         "label some in the dashboard (`oddeye ui --db ...`) first")
    if neg.size:
        thr = threshold_at_fpr(neg, max_false_alarm_rate)
    else:  # no false alarm seen yet: keep every true anomaly
        thr = float(pos.min())
    kept_pos, kept_neg = int((pos >= thr).sum()), int((neg >= thr).sum())
    return {"run": int(run_id), "threshold": float(thr), "max_false_alarm_rate": float(max_false_alarm_rate),
            "n_true_anomaly": int(pos.size), "n_false_alarm": int(neg.size), "n_unsure": int(unsure),
            "true_anomalies_kept": kept_pos, "false_alarms_kept": kept_neg,
            "recall_of_labelled": kept_pos / pos.size if pos.size else None,
            "false_alarm_rate": kept_neg / neg.size if neg.size else 0.0,
            "current_threshold": store.threshold(run_id)}


def apply_threshold(store: Store, run_id: int, suggestion: dict[str, Any], by: str = "") -> int:
    """Store a suggested threshold as the one in force for the run; returns the threshold row id."""
    return store.set_threshold(run_id, suggestion["threshold"], source="suggest", by=by,
                               max_false_alarm_rate=suggestion["max_false_alarm_rate"],
                               note=f"{suggestion['true_anomalies_kept']}/{suggestion['n_true_anomaly']} true anomalies "
                                    f"kept, {suggestion['false_alarms_kept']}/{suggestion['n_false_alarm']} false alarms")
