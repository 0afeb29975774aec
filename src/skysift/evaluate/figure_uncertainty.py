"""How far Burke et al.'s figure can be trusted: a bootstrap over the images.

Precision at 80 % recall on a few dozen held-out fields rests on a few dozen sources per S/N
cut (at S/N >= 100 the 64 typical test fields hold 41 galaxies), so one detection moves it by
points. Resampling whole images with replacement keeps what one image shares (its PSF, its
blends) and gives a percentile interval for the figure, and the fraction of resamples in
which the recall is reached at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skysift.errors import InvalidParameterError
from skysift.evaluate.segmentation import figure_from_rankings, figure_rankings

__all__ = [
    "bootstrap",
    "check_bootstrap",
    "percentile_interval",
    "precision_at_recall_interval",
    "precision_at_recall_intervals_by_snr",
]

#: One image's share of a group at one cut: (ranking scores, right, truth instances).
ImageRanking = tuple[np.ndarray, np.ndarray, int]


def check_bootstrap(*, confidence: float, n_resamples: int) -> None:
    """Refuse a ``confidence`` outside (0, 1) or fewer than one resample, by name."""
    if not 0 < confidence < 1:
        raise InvalidParameterError(f"confidence must be in (0, 1); got {confidence}")
    if n_resamples < 1:
        raise InvalidParameterError(f"n_resamples must be >= 1; got {n_resamples}")


def bootstrap(statistic, n_images: int, *, n_resamples: int, seed: int) -> np.ndarray:
    """``statistic(indices)`` on ``n_resamples`` resamples of ``n_images`` images drawn with
    replacement (numpy's generator seeded with ``seed``)."""
    rng = np.random.default_rng(seed)
    return np.array(
        [statistic(rng.integers(0, n_images, n_images)) for _ in range(n_resamples)], dtype=float
    )


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap ``values``."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def precision_at_recall_interval(
    per_image: list[ImageRanking],
    *,
    recall: float = 0.8,
    confidence: float = 0.9,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, float]:
    """Percentile bootstrap interval of the precision at ``recall``, resampling images.

    Parameters
    ----------
    per_image : list of (scores, right, n_true)
        One entry per image, as :func:`skysift.evaluate.segmentation.figure_rankings`
        gives for one group at one cut.
    recall : float
        The recall at which precision is read (Burke et al.: 0.8).
    confidence : float
        Central probability of the interval, in (0, 1).
    n_resamples : int
        Bootstrap resamples of the images.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``precision`` (all images, NaN when the recall is not reached), ``low`` and ``high``
        (the interval; a resample that does not reach the recall counts as precision 0, so
        ``low`` is 0 when more than ``(1 - confidence) / 2`` of them miss it) and
        ``reached`` (fraction of resamples that reach the recall).
    """
    check_bootstrap(confidence=confidence, n_resamples=n_resamples)
    n_images = len(per_image)
    nan = float("nan")
    if not n_images:
        return {"precision": nan, "low": nan, "high": nan, "reached": nan}

    def figure(chosen: np.ndarray) -> float:
        return figure_from_rankings([per_image[k] for k in chosen], recall=recall)["precision"]

    resampled = bootstrap(figure, n_images, n_resamples=n_resamples, seed=seed)
    reached = np.isfinite(resampled)
    low, high = percentile_interval(np.where(reached, resampled, 0.0), confidence)
    return {
        "precision": figure(np.arange(n_images)),
        "low": float(low),
        "high": float(high),
        "reached": float(reached.mean()),
    }


def precision_at_recall_intervals_by_snr(
    predictions: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    snr: list[np.ndarray],
    classes: tuple[str, ...],
    *,
    cuts: tuple[float, ...] = (20.0, 50.0, 100.0),
    recall: float = 0.8,
    iou: float = 0.5,
    by: str = "mask",
    confidence: float = 0.9,
    n_resamples: int = 1000,
    seed: int = 0,
    unmasked: list[dict[str, np.ndarray] | None] | None = None,
) -> list[dict[str, Any]]:
    """Burke et al.'s figure with bootstrap intervals, per S/N cut, stars and galaxies.

    Parameters
    ----------
    predictions, targets, snr, classes, cuts, recall, iou, by, unmasked
        As for :func:`skysift.evaluate.segmentation.precision_at_recall_by_snr`.
    confidence, n_resamples, seed
        As for :func:`precision_at_recall_interval`.

    Returns
    -------
    list of dict
        One row per cut: ``snr_min``, and per group ``{group}_n``, ``{group}_precision``,
        ``{group}_low``, ``{group}_high`` and ``{group}_reached``.
    """
    rows = []
    for ranked in figure_rankings(
        predictions, targets, snr, classes, cuts=cuts, iou=iou, by=by, unmasked=unmasked
    ):
        row: dict[str, Any] = {"snr_min": ranked["snr_min"]}
        for group in ("star", "galaxy"):
            interval = precision_at_recall_interval(
                ranked[group],
                recall=recall,
                confidence=confidence,
                n_resamples=n_resamples,
                seed=seed,
            )
            row[f"{group}_n"] = figure_from_rankings(ranked[group])["n"]
            row |= {f"{group}_{key}": value for key, value in interval.items()}
        rows.append(row)
    return rows
