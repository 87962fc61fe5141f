"""Decision thresholds on image scores: for a false-alarm rate (normal scores only) or from labels.

An image is called defective when its score is **above** the threshold (``score > threshold``).

**False-alarm rate** (:func:`false_alarm_threshold`). Given n scores of normal images the model has
not seen (held_out.py), exchangeable with a new normal image's score, the k-th smallest of them with
``k = ceil((n + 1)(1 - rate))`` is exceeded by a new normal image with probability at most
``(n + 1 - k) / (n + 1) <= rate`` (the split-conformal bound; on average over the n scores, ties only
lower it). It needs ``k <= n``, i.e. ``n >= 1 / rate - 1`` (99 images for 1%): with fewer, the
largest score is the threshold and the rate it guarantees is ``1 / (n + 1)``, recorded as not
supported. The realised rate of one calibration varies around the bound: it is Beta(n + 1 - k, k)
distributed, and its 95th percentile is recorded too.

**Labelled images** (:func:`labelled_threshold`): the threshold with the best F1, or the lowest one
whose precision reaches a target (the most defects found at that precision).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, DataError

DEFAULT_FALSE_ALARM_RATE = 0.01


def check_rate(rate: float, what: str = "--false-alarm-rate", one: bool = False) -> float:
    """``rate`` as a float in (0, 1) (``one``: 1 allowed too), else a one-line ConfigError."""
    if not isinstance(rate, int | float) or math.isnan(rate) or not 0.0 < rate <= 1.0 or (rate == 1.0 and not one):
        raise ConfigError(f"{what} {rate}: give a fraction between 0 and 1 (e.g. 0.01 for 1%)")
    return float(rate)


def images_needed(rate: float) -> int:
    """Held-out normal scores needed for an order-statistic threshold at ``rate``: ceil(1 / rate - 1)."""
    return max(1, math.ceil(1.0 / rate - 1.0 - 1e-9))


def false_alarm_threshold(scores: np.ndarray, rate: float) -> dict:
    """The order-statistic threshold for false-alarm rate ``rate`` from held-out normal ``scores``,
    with what ``n`` supports (module docstring)."""
    from scipy.stats import beta  # scipy.stats is slow to import: only when a threshold is computed

    rate = check_rate(rate)
    s = np.sort(np.asarray(scores, dtype=np.float64))
    n = len(s)
    if n == 0:
        raise DataError("no held-out normal scores: a false-alarm threshold needs defect-free images")
    k_wanted = math.ceil((n + 1) * (1.0 - rate) - 1e-9)
    supported = k_wanted <= n
    k = min(k_wanted, n)
    bound = (n + 1 - k) / (n + 1)
    record = {
        "target": rate,
        "threshold": float(s[k - 1]),
        "n": n,
        "order_statistic": k,
        "false_alarm_rate_bound": bound,
        "false_alarm_rate_95": float(beta.ppf(0.95, n + 1 - k, k)),
        "lowest_supported_rate": 1.0 / (n + 1),
        "target_supported": supported,
        "images_needed": images_needed(rate),
    }
    if supported:
        record["note"] = (
            f"the {k}-th smallest of {n} held-out normal scores: a new normal image exceeds it with "
            f"probability <= {bound:.4f} (target {rate:g})"
        )
    else:
        record["note"] = (
            f"{n} held-out normal scores support false-alarm rates >= 1/(n+1) = {1 / (n + 1):.4f}, not {rate:g}: "
            f"the threshold is their maximum; {images_needed(rate)} defect-free training images are needed for {rate:g}"
        )
    return record


def flagged(scores: np.ndarray | float, threshold: float) -> np.ndarray | bool:
    """The decision rule, its one owner: defective when the score is above the threshold."""
    return np.asarray(scores) > threshold


def verdict(score: float, threshold: float | None) -> str | None:
    """``defective`` / ``good`` at ``threshold`` (``None`` without one)."""
    return None if threshold is None else ("defective" if bool(flagged(score, threshold)) else "good")


def confusion(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, int]:
    """Counts at ``threshold`` (:func:`flagged`; label 1 = defective)."""
    flagged_ = flagged(scores, threshold)
    labels = np.asarray(labels).astype(bool)
    return {
        "true_positive": int((flagged_ & labels).sum()),
        "false_positive": int((flagged_ & ~labels).sum()),
        "false_negative": int((~flagged_ & labels).sum()),
        "true_negative": int((~flagged_ & ~labels).sum()),
    }


def rates(counts: dict[str, int]) -> dict[str, float | None]:
    """Precision, recall, F1 and false-alarm rate of confusion counts (``None`` where undefined)."""
    tp, fp, fn, tn = (counts[k] for k in ("true_positive", "false_positive", "false_negative", "true_negative"))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_alarm_rate": fp / (fp + tn) if fp + tn else None,
    }


def labelled_threshold(scores: np.ndarray, labels: np.ndarray, precision: float | None = None) -> dict:
    """The threshold with the best F1 (``precision`` None) or the lowest with precision >= ``precision``
    (ties: the higher threshold); if no threshold reaches it, the one with the highest precision."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(int)
    if labels.sum() == 0:
        raise DataError("the labelled images hold no defective image (test/<defect type>/): nothing to tune on")
    if precision is not None:
        precision = check_rate(precision, "--precision", one=True)
    candidates = np.r_[np.nextafter(scores.min(), -np.inf), np.unique(scores)]  # "flag all", then each score
    rows = []
    for t in candidates:
        counts = confusion(scores, labels, float(t))
        rows.append((float(t), counts, rates(counts)))
    if precision is None:
        rule = "best_f1"
        t, counts, r = max(rows, key=lambda row: (row[2]["f1"] or 0.0, row[0]))
        met = True
    else:
        rule = "precision"
        reaching = [row for row in rows if row[2]["precision"] is not None and row[2]["precision"] >= precision]
        met = bool(reaching)
        if reaching:
            t, counts, r = max(reaching, key=lambda row: (row[2]["recall"], row[0]))
        else:
            t, counts, r = max(
                (row for row in rows if row[2]["precision"] is not None),
                key=lambda row: (row[2]["precision"], row[2]["recall"], row[0]),
            )
    return {
        "rule": rule,
        "target_precision": precision,
        "target_met": met,
        "threshold": t,
        "n": len(scores),
        "n_defective": int(labels.sum()),
        **counts,
        **r,
    }
