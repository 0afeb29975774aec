"""Detection metrics from a :class:`~skysift.evaluate.matching.MatchResult`.

F1 here is ASID-L's Dice coefficient, ``2 TP / (2 TP + FP + FN)``. Binned metrics put truth-side
counts (TP, FN, recall) in the bin of the truth value and detection-side counts (FP) in the bin
of the detection's value (its own S/N, or the local truth density at its position), so both
precision and recall can be read per bin.
"""

from __future__ import annotations

import numpy as np

from skysift.errors import InvalidParameterError
from skysift.evaluate.matching import MatchResult

__all__ = ["binned_detection_metrics", "detection_metrics", "local_density"]


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / denominator if denominator else float("nan")


def detection_metrics(
    match: MatchResult, *, pixel_scale: float | None = None, area_pixels: float | None = None
) -> dict[str, float]:
    """Counts, precision, recall, F1 and centroid error of a match.

    Parameters
    ----------
    match : MatchResult
    pixel_scale : float, optional
        Arcsec per pixel; with ``area_pixels`` gives counts per arcmin^2.
    area_pixels : float, optional
        Image area in pixels (unmasked area, ideally).

    Returns
    -------
    dict
        ``tp, fp, fn, neutral, precision, recall, f1, centroid_rms`` (pixels, over true
        positives), ``centroid_bias_x/y``, and with an area ``tp_per_arcmin2`` etc.
        Precision/recall/F1 are NaN when undefined (nothing detected / nothing required).
    """
    tp, fp, fn = match.tp, match.fp, match.fn
    result = {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "neutral": int(match.neutral_detections.size),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "centroid_rms": float(np.sqrt(np.mean(match.dx**2 + match.dy**2))) if tp else np.nan,
        "centroid_bias_x": float(np.mean(match.dx)) if tp else np.nan,
        "centroid_bias_y": float(np.mean(match.dy)) if tp else np.nan,
    }
    if pixel_scale is not None and area_pixels is not None:
        if not (pixel_scale > 0 and area_pixels > 0):
            raise InvalidParameterError(
                f"pixel_scale and area_pixels must be > 0; got {pixel_scale}, {area_pixels}"
            )
        arcmin2 = area_pixels * (pixel_scale / 60.0) ** 2
        result["area_arcmin2"] = arcmin2
        for name in ("tp", "fp", "fn"):
            result[f"{name}_per_arcmin2"] = result[name] / arcmin2
    return result


def binned_detection_metrics(
    match: MatchResult, *, truth_values, detection_values, bins, name: str = "value"
):
    """Detection metrics per bin.

    Parameters
    ----------
    match : MatchResult
    truth_values : array_like
        One value per truth source (e.g. truth S/N, local density).
    detection_values : array_like
        One value per detection on the same scale (e.g. measured S/N, local density at the
        detection); decides the bin of false positives.
    bins : array_like
        Bin edges (``len(bins) - 1`` bins, right edge exclusive; the last bin is closed).
    name : str
        Name of the binned quantity, for the ``{name}_lo``/``{name}_hi`` columns.

    Returns
    -------
    astropy.table.Table
        Columns ``{name}_lo, {name}_hi, n_required, tp, fn, fp, recall, precision, f1``.
        Precision in a bin mixes truth-binned TP with detection-binned FP, so it is exact only
        when both values agree for matched pairs (local density does; S/N nearly does).
    """
    from astropy.table import Table

    truth_values = np.asarray(truth_values, dtype=float)
    detection_values = np.asarray(detection_values, dtype=float)
    edges = np.asarray(bins, dtype=float)
    if truth_values.shape != (match.n_truth,):
        raise InvalidParameterError(
            f"truth_values needs {match.n_truth} values; got shape {truth_values.shape}"
        )
    if detection_values.shape != (match.n_detections,):
        raise InvalidParameterError(
            f"detection_values needs {match.n_detections} values; got {detection_values.shape}"
        )
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise InvalidParameterError(f"bins must be increasing edges; got {bins}")

    def bin_of(values: np.ndarray) -> np.ndarray:
        index = np.searchsorted(edges, values, side="right") - 1
        index[values == edges[-1]] = edges.size - 2
        index[(values < edges[0]) | (values > edges[-1]) | ~np.isfinite(values)] = -1
        return index

    n_bins = edges.size - 1
    truth_bin = bin_of(truth_values)
    tp = np.bincount(truth_bin[match.tp_truth][truth_bin[match.tp_truth] >= 0], minlength=n_bins)
    fn_bins = truth_bin[match.fn_truth]
    fn = np.bincount(fn_bins[fn_bins >= 0], minlength=n_bins)
    fp_bins = bin_of(detection_values)[match.fp_detections]
    fp = np.bincount(fp_bins[fp_bins >= 0], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(tp + fn > 0, tp / (tp + fn), np.nan)
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
    return Table(
        {
            f"{name}_lo": edges[:-1],
            f"{name}_hi": edges[1:],
            "n_required": tp + fn,
            "tp": tp,
            "fn": fn,
            "fp": fp,
            "recall": recall,
            "precision": precision,
            "f1": f1,
        }
    )


def local_density(x, y, truth_x, truth_y, *, radius: float, pixel_scale: float) -> np.ndarray:
    """Truth sources per arcmin^2 within ``radius`` pixels of each ``(x, y)``.

    A position's own truth source is counted, so an isolated source has density
    ``1 / (pi radius^2)`` in arcmin^-2 units. Edge effects are not corrected.
    """
    from scipy.spatial import cKDTree

    points = np.column_stack([np.asarray(x, float), np.asarray(y, float)])
    if points.shape[0] == 0:
        return np.zeros(0)
    truth = np.column_stack([np.asarray(truth_x, float), np.asarray(truth_y, float)])
    if truth.shape[0] == 0:
        return np.zeros(points.shape[0])
    counts = cKDTree(truth).query_ball_point(points, r=radius, return_length=True)
    area_arcmin2 = np.pi * radius**2 * (pixel_scale / 60.0) ** 2
    return np.asarray(counts, dtype=float) / area_arcmin2
