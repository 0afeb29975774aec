"""Burke et al.'s figure read their way: per-image precision-recall curves, averaged.

Burke et al. (2019) quote galaxy precision 0.98 and star precision 0.92 at 80 % recall in a
typical field. Their public code (``burke86/astro_rcnn``: ``compute_performance`` in
``mrcnn/utils.py``, called by ``astro_rcnn.py assess``) reads those numbers off curves built
differently from :func:`skysift.evaluate.segmentation.precision_at_recall_by_snr`'s pooled
curve by truth S/N:

1. each image on its own, each class on its own: the detections of the class with confidence
   >= 0.5 (their ``DETECTION_MIN_CONFIDENCE``), ranked by score, matched one-to-one to the
   truth instances of the class at mask IoU >= 0.5 (a detection of the other class neither
   matches nor counts);
2. the image's precision and recall after each detection, with a (recall 0, precision 0)
   point before and a (recall 1, precision 0) point after, and each precision raised to the
   highest one that follows it (the VOC envelope);
3. both arrays resampled by rank to 50 points (``numpy.interp`` over the index), so an image
   with 5 detections weighs as much as one with 50;
4. the 50-point precision and recall averaged over the images.

No S/N cut is applied: every truth instance of the image is required. This module builds
those curves (:func:`image_curves`; :func:`ranking_curve` builds one from the detections our
figure counts at a S/N cut, to apply their averaging to our cuts), reads the precision where
the mean recall reaches 0.8 (:func:`read_mean_curve`) and gives it a bootstrap interval over
the images (:func:`mean_curve_interval`). How a mean curve is read between its samples is
ours (their paper reads a plot): linear in recall between the two samples around 0.8.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from skysift.errors import InvalidParameterError
from skysift.evaluate.figure_uncertainty import bootstrap, check_bootstrap, percentile_interval
from skysift.evaluate.segmentation import _boolean_masks, match_instances

__all__ = [
    "GROUPS",
    "ImageCurve",
    "image_curves",
    "image_rankings",
    "mean_curve_interval",
    "pooled_in_groups",
    "ranking_curve",
    "read_mean_curve",
]

#: The two groups Burke et al. score: stars, and every galaxy class together.
GROUPS = ("star", "galaxy")

#: Points each image's curve is resampled to (their ``compute_performance``).
CURVE_POINTS = 50

#: Their inference config's ``DETECTION_MIN_CONFIDENCE``.
MIN_CONFIDENCE = 0.5


class ImageCurve(NamedTuple):
    """One image's curve for one group: ``precision`` and ``recall`` resampled to the same
    points (steps 2-3 of the module notes), and ``max_recall``, the recall with every kept
    detection (before the end point)."""

    precision: np.ndarray
    recall: np.ndarray
    max_recall: float


def image_curves(
    prediction: dict[str, Any],
    target: dict[str, Any],
    classes: tuple[str, ...],
    *,
    iou: float = 0.5,
    min_score: float = MIN_CONFIDENCE,
    points: int = CURVE_POINTS,
) -> dict[str, ImageCurve | None]:
    """One image's resampled precision-recall curve per group, as Burke et al. build it.

    Parameters
    ----------
    prediction, target, classes, iou, min_score
        As for :func:`image_rankings`.
    points : int
        Samples of the resampled curve.

    Returns
    -------
    dict
        Per group an :class:`ImageCurve`, or None when the image holds no truth instance of
        the group (their code divides by zero there; such an image is left out of that
        group's mean).
    """
    rankings = image_rankings(prediction, target, classes, iou=iou, min_score=min_score)
    return {group: ranking_curve(*entry, points=points) for group, entry in rankings.items()}


def image_rankings(
    prediction: dict[str, Any],
    target: dict[str, Any],
    classes: tuple[str, ...],
    *,
    iou: float = 0.5,
    min_score: float = MIN_CONFIDENCE,
) -> dict[str, tuple[np.ndarray, np.ndarray, int]]:
    """Step 1 of the module notes for one image: per group, the scores of its detections at
    or above ``min_score``, whether each matched, and the truth instances of the group.

    Parameters
    ----------
    prediction : dict
        ``masks`` ``(n, 1, H, W)`` probabilities (or booleans), ``labels`` (1-based indices
        into ``classes``) and ``scores``; ranked by ``detection_scores`` where present (the
        ``Segmenter``'s ranking), as the other figures of :mod:`skysift.evaluate.segmentation`.
    target : dict
        ``masks`` ``(m, H, W)`` booleans and ``labels``.
    classes : tuple of str
        Class names; ``"star"`` is one group, every other class the galaxies.
    iou : float
        Mask IoU of a match.
    min_score : float
        Detections scoring below it are dropped before ranking.

    Returns
    -------
    dict
        Per group ``(scores, right, n_true)``, the form of
        :func:`skysift.evaluate.segmentation.figure_rankings`' entries.
    """
    star = classes.index("star") + 1 if "star" in classes else -1
    ranking = np.asarray(prediction.get("detection_scores", prediction["scores"]), dtype=float)
    predicted_star = np.asarray(prediction["labels"]) == star
    true_star = np.asarray(target["labels"]) == star
    pred_masks = _boolean_masks(prediction["masks"])
    true_masks = np.asarray(target["masks"], dtype=bool)
    out = {}
    for group in GROUPS:
        mine = np.flatnonzero(predicted_star if group == "star" else ~predicted_star)
        mine = mine[ranking[mine] >= min_score]
        theirs = np.flatnonzero(true_star if group == "star" else ~true_star)
        matched, _, _ = match_instances(
            pred_masks[mine], ranking[mine], true_masks[theirs], iou=iou
        )
        right = np.zeros(len(mine), dtype=bool)
        right[matched] = True
        out[group] = (ranking[mine], right, len(theirs))
    return out


def pooled_in_groups(
    per_image: list[tuple[np.ndarray, np.ndarray, int]], size: int
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Consecutive images' ``(scores, right, n_true)`` entries pooled ``size`` at a time, as
    if each pool were one image ``size`` times larger (a last, smaller pool is dropped), so
    that curves of fields smaller than Burke et al.'s can be averaged at their area."""
    if size < 1:
        raise InvalidParameterError(f"size must be >= 1; got {size}")
    pools = []
    for start in range(0, len(per_image) - size + 1, size):
        chunk = per_image[start : start + size]
        pools.append(
            (
                np.concatenate([np.asarray(e[0], dtype=float) for e in chunk]),
                np.concatenate([np.asarray(e[1], dtype=bool) for e in chunk]),
                int(sum(e[2] for e in chunk)),
            )
        )
    return pools


def ranking_curve(
    scores: np.ndarray,
    right: np.ndarray,
    n_true: int,
    *,
    min_score: float = MIN_CONFIDENCE,
    points: int = CURVE_POINTS,
) -> ImageCurve | None:
    """One image's curve for one group from its ranked detections.

    Parameters
    ----------
    scores, right, n_true
        The image's detections of the group (their scores and whether each matched a truth
        instance of the group) and its truth instances of the group: :func:`image_curves`'
        matching, or one entry of :func:`skysift.evaluate.segmentation.figure_rankings`
        (Burke et al.'s averaging applied to the detections our figure counts at a S/N cut).
    min_score, points
        As for :func:`image_curves`.

    Returns
    -------
    ImageCurve or None
        None when ``n_true`` is 0.
    """
    if points < 2:
        raise InvalidParameterError(f"points must be >= 2; got {points}")
    if n_true <= 0:
        return None
    scores = np.asarray(scores, dtype=float)
    kept = scores >= min_score
    order = np.argsort(-scores[kept], kind="stable")
    hits = np.cumsum(np.asarray(right, dtype=bool)[kept][order])
    precision = np.concatenate([[0.0], hits / np.arange(1, len(hits) + 1), [0.0]])
    recall = np.concatenate([[0.0], hits / n_true, [1.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    where = np.linspace(0, len(precision), points)
    index = np.arange(len(precision))
    return ImageCurve(
        np.interp(where, index, precision),
        np.interp(where, index, recall),
        float(hits[-1] / n_true) if len(hits) else 0.0,
    )


def read_mean_curve(curves: list[ImageCurve | None], *, recall: float = 0.8) -> dict[str, Any]:
    """Precision at ``recall`` on the mean of the images' curves.

    Parameters
    ----------
    curves : list of ImageCurve or None
        One group's curves, one per image (None: left out).
    recall : float
        Recall at which the precision is read.

    Returns
    -------
    dict
        ``images`` (curves averaged), ``precision`` (linear in recall between the two mean
        samples around ``recall``; NaN with no image), ``max_recall`` (the images' mean
        recall with every kept detection: below ``recall``, the reading lies on the ramp
        towards the images' (recall 1, precision 0) end points, not on their detections), and
        the mean ``curve_precision`` and ``curve_recall``.
    """
    kept = [c for c in curves if c is not None]
    if not kept:
        nan = float("nan")
        return {"images": 0, "precision": nan, "max_recall": nan}
    precision = np.mean([c.precision for c in kept], axis=0)
    mean_recall = np.mean([c.recall for c in kept], axis=0)
    at = int(np.argmax(mean_recall >= recall))
    if at == 0 or mean_recall[at - 1] == mean_recall[at]:
        value = float(precision[at])
    else:
        step = (recall - mean_recall[at - 1]) / (mean_recall[at] - mean_recall[at - 1])
        value = float(precision[at - 1] + step * (precision[at] - precision[at - 1]))
    return {
        "images": len(kept),
        "precision": value,
        "max_recall": float(np.mean([c.max_recall for c in kept])),
        "curve_precision": precision.tolist(),
        "curve_recall": mean_recall.tolist(),
    }


def mean_curve_interval(
    curves: list[ImageCurve | None],
    *,
    recall: float = 0.8,
    confidence: float = 0.9,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`read_mean_curve` with a percentile bootstrap interval over the images.

    Parameters
    ----------
    curves, recall
        As for :func:`read_mean_curve`.
    confidence, n_resamples, seed
        As for :func:`skysift.evaluate.figure_uncertainty.precision_at_recall_interval`.

    Returns
    -------
    dict
        :func:`read_mean_curve`'s result with ``low`` and ``high``.
    """
    check_bootstrap(confidence=confidence, n_resamples=n_resamples)
    result = read_mean_curve(curves, recall=recall)
    kept = [c for c in curves if c is not None]
    if not kept:
        return result | {"low": float("nan"), "high": float("nan")}

    def reading(chosen: np.ndarray) -> float:
        return read_mean_curve([kept[k] for k in chosen], recall=recall)["precision"]

    values = bootstrap(reading, len(kept), n_resamples=n_resamples, seed=seed)
    low, high = percentile_interval(values, confidence)
    return result | {"low": low, "high": high}
