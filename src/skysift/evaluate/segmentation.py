"""Instance-segmentation metrics: COCO mAP (torchmetrics) and matched-instance statistics.

mAP uses :class:`torchmetrics.detection.MeanAveragePrecision` (the COCO definitions of
pycocotools) for boxes and masks. The matched statistics pair each truth instance with the
prediction of highest mask IoU (>= ``iou``, greedy by score, one-to-one) and give per-class
precision, recall and F1, the class confusion matrix of matched pairs, and the centroid
offsets the Mask Galaxy paper measures (centre of mass of the image inside the mask).

A detection matched to no instance but sitting on a truth source that has no mask (too faint
for one, or hidden under a brighter neighbour's footprint) found a real source whose mask
cannot be scored: given those sources (``unmasked``), it counts neither as right nor as
wrong, as the localizer's scoring treats truth between its S/N limits
(:mod:`skysift.evaluate.matching`). Burke et al.'s figure by S/N treats a detection on an
instance below its cut the same way, whatever the IoU of its mask: matched to it, or, when no
detection matched it, overlapping it more than any other instance (a user's S/N cut on the
catalog would put such a detection below the cut too). A detection of a star-forming clump,
a second detection of a source, or one of nothing stays a false one at every cut.

The detector's masks overlap; the catalog a user gets does not: the ``Segmenter`` paints them
into one label map, most confident last, and drops what is left mostly painted over.
:func:`as_catalog` does the same to a prediction, so the metrics can be taken on either.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

__all__ = [
    "MAX_DETECTIONS",
    "as_catalog",
    "confusion_statistics",
    "counted_detections",
    "detection_map",
    "figure_from_rankings",
    "figure_matches",
    "figure_rankings",
    "mask_centroid",
    "mask_iou_matrix",
    "match_boxes",
    "match_instances",
    "match_predictions",
    "precision_at_recall",
    "precision_at_recall_by_snr",
    "unmasked_detections",
]

#: Detections per image considered by mAP (crowded fields hold more than COCO's 100).
MAX_DETECTIONS = 1000


def _as_tensors(
    items: list[dict[str, Any]], *, prediction: bool, masks: bool = True
) -> list[dict[str, Any]]:
    import torch

    out = []
    for item in items:
        entry = {
            "boxes": torch.as_tensor(np.asarray(item["boxes"], dtype=np.float32).reshape(-1, 4)),
            "labels": torch.as_tensor(np.asarray(item["labels"], dtype=np.int64)),
        }
        if masks:
            entry["masks"] = torch.as_tensor(_boolean_masks(item["masks"]))
        if prediction:
            entry["scores"] = torch.as_tensor(np.asarray(item["scores"], dtype=np.float32))
        out.append(entry)
    return out


#: What :func:`as_catalog` can paint the masks in order of.
PAINT_ORDERS = ("detection_scores", "scores")


def as_catalog(
    prediction: dict[str, Any],
    *,
    mask_threshold: float = 0.5,
    paint_by: str = "detection_scores",
    large_mask_threshold: float | None = None,
    large_mask_area: int = 600,
) -> dict[str, Any]:
    """A prediction as the ``Segmenter``'s label map leaves it.

    The masks are painted in ascending ``detection_scores`` where present (a galaxy's type
    probability does not decide who owns a pixel; see
    :func:`skysift.morphology.retype_galaxies`), else ``scores``: the most confident instance
    owns contested pixels. Each instance keeps the pixels it owns, and one left with less
    than :data:`skysift.segment.MIN_KEPT_FRACTION` of its own mask (or none) is dropped.
    Other keys follow the kept instances; the input is not modified. ``paint_by="scores"``
    paints by the typed ``scores`` instead, as the ``Segmenter`` did before session 23 (the
    shipped second looks' training stamps were cut so). An instance of ``large_mask_area``
    pixels or more at ``mask_threshold`` is painted at ``large_mask_threshold`` when given
    (``SegmentConfig.large_mask_threshold``).
    """
    if paint_by not in PAINT_ORDERS:
        raise ValueError(f"paint_by must be one of {PAINT_ORDERS}; got {paint_by!r}")
    scores = np.asarray(prediction.get(paint_by, prediction["scores"]))
    if not scores.size or "masks" not in prediction:
        return dict(prediction)
    labels, kept = _painted_map(
        prediction,
        mask_threshold=mask_threshold,
        paint_by=paint_by,
        large_mask_threshold=large_mask_threshold,
        large_mask_area=large_mask_area,
    )
    out = {key: np.asarray(value)[kept] for key, value in prediction.items()}
    out["masks"] = (labels[np.newaxis] == (kept[:, None, None] + 1))[:, np.newaxis]
    out["masks"] = out["masks"].astype(np.float32)
    return out


def kept_instances(prediction: dict[str, Any], **paint) -> np.ndarray:
    """Indices of the instances of ``prediction`` that :func:`as_catalog` keeps (given its
    keyword options ``paint``), ascending; all of them when it has no masks."""
    n = len(np.asarray(prediction["scores"]))
    if not n or "masks" not in prediction:
        return np.arange(n)
    return _painted_map(prediction, **paint)[1]


def _painted_map(
    prediction: dict[str, Any],
    *,
    mask_threshold: float = 0.5,
    paint_by: str = "detection_scores",
    large_mask_threshold: float | None = None,
    large_mask_area: int = 600,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`as_catalog`'s label map (instance k is k + 1) and its kept instances."""
    from skysift.segment import painted_map

    scores = np.asarray(prediction.get(paint_by, prediction["scores"]))
    probabilities = np.asarray(prediction["masks"])[:, 0]
    masks = probabilities >= mask_threshold
    if large_mask_threshold is not None:
        large = masks.reshape(len(masks), -1).sum(axis=1) >= large_mask_area
        masks[large] = probabilities[large] >= large_mask_threshold
    labels, _, survives = painted_map([np.nonzero(mask) for mask in masks], scores, masks.shape[1:])
    return labels, np.flatnonzero(survives)


def _boolean_masks(masks) -> np.ndarray:
    """``(n, H, W)`` booleans from booleans or Mask R-CNN's ``(n, 1, H, W)`` probabilities."""
    masks = np.asarray(masks)
    return (masks[:, 0] >= 0.5) if masks.ndim == 4 else masks.astype(bool)


def detection_map(
    predictions: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    *,
    class_metrics: bool = False,
    masks: bool = True,
) -> dict[str, Any]:
    """Box and mask mean average precision (COCO) over a set of images.

    Parameters
    ----------
    predictions : list of dict
        Per image: ``boxes`` (n, 4) x0, y0, x1, y1; ``labels``; ``scores``; ``masks`` as
        ``(n, H, W)`` booleans or ``(n, 1, H, W)`` probabilities (thresholded at 0.5).
    targets : list of dict
        Per image: ``boxes``, ``labels``, ``masks`` (``(n, H, W)``).
    class_metrics : bool
        Also return mAP@[0.5:0.95] and mAP@0.5 per class label (``box_map_per_class``,
        ``mask_map_per_class``, ...).
    masks : bool
        Score masks too; False scores boxes alone (box-only detectors; no ``masks`` needed).

    Returns
    -------
    dict
        ``box_map``, ``box_map_50`` and (with masks) ``mask_map``, ``mask_map_50`` (floats;
        -1 when there is nothing to score), and with ``class_metrics`` the per-class values
        (``box_map_per_class``, ``box_map_50_per_class``, ``mask_map_per_class``,
        ``mask_map_50_per_class``: label -> value).
    """
    from torchmetrics.detection import MeanAveragePrecision

    # pycocotools' summary numbers assume at most 100 detections per image; crowded images
    # hold more, so the averages are taken here from the precision array at the largest limit
    kinds = (("box", "bbox"), ("mask", "segm")) if masks else (("box", "bbox"),)
    metric = MeanAveragePrecision(
        iou_type=tuple(prefix for _, prefix in kinds),
        max_detection_thresholds=[1, 10, MAX_DETECTIONS],
        extended_summary=True,
        class_metrics=class_metrics,
    )
    metric.update(
        _as_tensors(predictions, prediction=True, masks=masks),
        _as_tensors(targets, prediction=False, masks=masks),
    )
    result = metric.compute()
    out: dict[str, Any] = {}
    classes = np.atleast_1d(result["classes"].numpy()).tolist()
    for kind, prefix in kinds:
        key = f"{prefix}_precision" if masks else "precision"
        precision = result[key].numpy()[:, :, :, 0, -1]  # (iou, recall, class)
        out[f"{kind}_map"] = _mean_valid(precision)
        out[f"{kind}_map_50"] = _mean_valid(precision[:1])
        if class_metrics:
            out[f"{kind}_map_per_class"] = {
                int(c): _mean_valid(precision[:, :, k]) for k, c in enumerate(classes)
            }
            out[f"{kind}_map_50_per_class"] = {
                int(c): _mean_valid(precision[:1, :, k]) for k, c in enumerate(classes)
            }
    return out


def _mean_valid(values: np.ndarray) -> float:
    """Mean of the defined entries (COCO marks undefined ones -1); -1 if none."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def mask_centroid(image: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """``(x, y)`` centre of mass of the sky-subtracted ``image`` inside ``mask``.

    Negative (noise) pixels keep their sign: clipping them to 0 would leave a positive
    pedestal over the mask that pulls the centroid towards the mask's middle. When the light
    inside the mask does not sum to a positive value, the mask's own centre is returned.
    """
    from scipy import ndimage

    weights = np.where(mask, image, 0.0)
    if weights.sum() <= 0:
        rows, cols = np.nonzero(mask)
        return (float(cols.mean()), float(rows.mean())) if rows.size else (np.nan, np.nan)
    row, col = ndimage.center_of_mass(weights)
    return float(col), float(row)


def match_instances(
    pred_masks: np.ndarray, pred_scores: np.ndarray, true_masks: np.ndarray, *, iou: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matches of predicted and truth masks by IoU, greedy in score order.

    Returns
    -------
    pred_index, true_index : numpy.ndarray
        Matched pairs.
    ious : numpy.ndarray
        Their IoU.
    """
    if not len(pred_masks) or not len(true_masks):
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, np.zeros(0)
    return _greedy_matches(mask_iou_matrix(pred_masks, true_masks), pred_scores, iou)


def mask_iou_matrix(pred_masks: np.ndarray, true_masks: np.ndarray) -> np.ndarray:
    """``(n_pred, n_true)`` IoU of every predicted mask with every truth mask (boolean
    ``(n, H, W)`` stacks; 0 where both are empty)."""
    pred = np.asarray(pred_masks, dtype=bool).reshape(len(pred_masks), -1)
    true = np.asarray(true_masks, dtype=bool).reshape(len(true_masks), -1)
    inter = pred.astype(np.float32) @ true.T.astype(np.float32)
    union = pred.sum(1)[:, None] + true.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 0.0)


def match_boxes(
    pred_boxes: np.ndarray, pred_scores: np.ndarray, true_boxes: np.ndarray, *, iou: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`match_instances` for ``(n, 4)`` boxes (x0, y0, x1, y1): box IoU, greedy by score."""
    if not len(pred_boxes) or not len(true_boxes):
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, np.zeros(0)
    return _greedy_matches(box_iou_matrix(pred_boxes, true_boxes), pred_scores, iou)


def box_iou_matrix(pred_boxes: np.ndarray, true_boxes: np.ndarray) -> np.ndarray:
    """``(n_pred, n_true)`` IoU of ``(n, 4)`` boxes (x0, y0, x1, y1), torchvision's."""
    import torch
    from torchvision.ops import box_iou

    return box_iou(
        torch.as_tensor(np.asarray(pred_boxes, dtype=np.float32).reshape(-1, 4)),
        torch.as_tensor(np.asarray(true_boxes, dtype=np.float32).reshape(-1, 4)),
    ).numpy()


def _greedy_matches(
    overlap: np.ndarray, pred_scores: np.ndarray, iou: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one pairs from an IoU matrix (predictions x truth), highest score first."""
    taken = np.zeros(overlap.shape[1], dtype=bool)
    pairs = []
    for p in np.argsort(-np.asarray(pred_scores), kind="stable"):
        candidates = np.where(taken, -1.0, overlap[p])
        t = int(np.argmax(candidates))
        if candidates[t] >= iou:
            taken[t] = True
            pairs.append((p, t, candidates[t]))
    if not pairs:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty, np.zeros(0)
    p_idx, t_idx, values = zip(*pairs, strict=True)
    return np.array(p_idx, dtype=np.intp), np.array(t_idx, dtype=np.intp), np.array(values)


def match_predictions(
    prediction: dict[str, Any], target: dict[str, Any], *, by: str = "mask", iou: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Matched ``(prediction index, truth index)`` pairs of one image, by mask or box IoU."""
    if by not in ("mask", "box"):
        raise ValueError(f"by must be 'mask' or 'box'; got {by!r}")
    scores = np.asarray(prediction["scores"], dtype=float)
    if by == "box":
        p, t, _ = match_boxes(prediction["boxes"], scores, target["boxes"], iou=iou)
    else:
        masks = _boolean_masks(prediction["masks"])
        p, t, _ = match_instances(masks, scores, np.asarray(target["masks"], bool), iou=iou)
    return p, t


#: Largest distance (pixels) from a detection's box centre to a truth source without a mask
#: for the detection to be taken as that source's (see the module notes).
UNMASKED_MATCH_RADIUS = 2.0


def unmasked_detections(
    prediction: dict[str, Any],
    matched: np.ndarray,
    unmasked: dict[str, np.ndarray] | None,
    *,
    radius: float = UNMASKED_MATCH_RADIUS,
) -> np.ndarray:
    """Which detections of one image sit on a truth source that has no instance mask.

    Parameters
    ----------
    prediction : dict
        ``boxes`` ``(n, 4)`` as (x0, y0, x1, y1), x1 and y1 one past the last pixel.
    matched : array of bool
        Detections already matched to an instance (never taken here).
    unmasked : dict of arrays or None
        ``x`` and ``y`` (0-based pixels) of the image's truth sources without a mask
        (:func:`skysift.train.segmenter_data.unmasked_sources`); None for none.
    radius : float
        Largest distance from a detection's box centre to its source.

    Returns
    -------
    numpy.ndarray of bool
        One per detection; each such source takes at most one detection (the nearest,
        one-to-one as :func:`skysift.evaluate.matching.match_catalogs`).
    """
    from skysift.evaluate.matching import match_catalogs

    boxes = np.asarray(prediction["boxes"], dtype=float).reshape(-1, 4)
    found = np.zeros(len(boxes), dtype=bool)
    free = np.flatnonzero(~np.asarray(matched, dtype=bool))
    if unmasked is None or not free.size or not len(unmasked["x"]):
        return found
    x = 0.5 * (boxes[free, 0] + boxes[free, 2]) - 0.5
    y = 0.5 * (boxes[free, 1] + boxes[free, 3]) - 0.5
    pairs = match_catalogs(x, y, unmasked["x"], unmasked["y"], radius=radius)
    found[free[pairs.detection_index]] = True
    return found


def precision_at_recall(
    scores: np.ndarray, is_true: np.ndarray, n_true: int, *, recall: float = 0.8
) -> float:
    """Precision at the highest score threshold whose recall reaches ``recall``.

    Parameters
    ----------
    scores : array
        Scores of the detections of one class.
    is_true : array of bool
        Whether each detection matches a truth object of that class.
    n_true : int
        Truth objects of the class.
    recall : float

    Returns
    -------
    float
        NaN when no threshold reaches the recall.
    """
    if n_true <= 0 or not len(scores):
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    hits = np.cumsum(np.asarray(is_true, dtype=bool)[order])
    recalls = hits / n_true
    reached = np.flatnonzero(recalls >= recall)
    if not reached.size:
        return float("nan")
    k = reached[0]
    return float(hits[k] / (k + 1))


def precision_at_recall_by_snr(
    predictions: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    snr: list[np.ndarray],
    classes: tuple[str, ...],
    *,
    cuts: tuple[float, ...] = (5.0, 10.0, 20.0, 50.0, 100.0),
    recall: float = 0.8,
    iou: float = 0.5,
    by: str = "mask",
    unmasked: list[dict[str, np.ndarray] | None] | None = None,
) -> list[dict[str, Any]]:
    """Burke et al.'s figure, precision at ``recall`` for stars and for galaxies, among the
    truth instances with S/N at or above each cut.

    Predictions are matched one-to-one to all truth instances (class-agnostic, by mask or
    box IoU, greedy by score). For a cut, truth below it is neutral: a prediction matched to
    it counts neither as right nor as wrong, as the localizer's scoring treats sources
    between the detection limits. So is a prediction that matched nothing but sits on a
    truth source below the cut: an instance whose mask it drew too wide or too narrow for
    the IoU, or a source without a mask (``unmasked``); see :func:`unmasked_detections`. A
    prediction is right for its group
    (star, or any galaxy class) when its match is a truth instance of that group.
    Predictions are ranked by their ``detection_scores`` where present (the detector's
    P(star) or P(galaxy), before a galaxy type network scaled them by its type's
    probability; see :func:`skysift.morphology.retype_galaxies`), else by ``scores``.

    Parameters
    ----------
    predictions, targets : list of dict
        Per image, as for :func:`detection_map`.
    snr : list of numpy.ndarray
        Per image, the S/N of each truth instance (same order as the target's).
    classes : tuple of str
        Class names; label ``k`` is ``classes[k - 1]``.
    unmasked : list of dict, optional
        Per image, the truth sources without a mask (``x``, ``y``); None leaves every
        unmatched prediction a false one.

    Returns
    -------
    list of dict
        One row per cut: ``snr_min``, and per group ``{group}_n`` (truth instances),
        ``{group}_precision`` (NaN when the recall is never reached) and
        ``{group}_max_recall`` (recall with every prediction kept).
    """
    rows = []
    for ranked in figure_rankings(
        predictions, targets, snr, classes, cuts=cuts, iou=iou, by=by, unmasked=unmasked
    ):
        row: dict[str, Any] = {"snr_min": ranked["snr_min"]}
        for group in ("star", "galaxy"):
            figure = figure_from_rankings(ranked[group], recall=recall)
            row |= {f"{group}_{key}": value for key, value in figure.items()}
        rows.append(row)
    return rows


def figure_from_rankings(
    per_image: list[tuple[np.ndarray, np.ndarray, int]], *, recall: float = 0.8
) -> dict[str, Any]:
    """Burke et al.'s figure for one group at one cut from :func:`figure_rankings`' entries
    of the images to count: ``n`` (truth instances), ``precision`` at ``recall`` (NaN when it
    is never reached) and ``max_recall`` (recall with every prediction kept)."""
    n_true = int(sum(image[2] for image in per_image))
    if not per_image:
        return {"n": 0, "precision": float("nan"), "max_recall": float("nan")}
    scores = np.concatenate([np.asarray(image[0], dtype=float) for image in per_image])
    right = np.concatenate([np.asarray(image[1], dtype=bool) for image in per_image])
    return {
        "n": n_true,
        "precision": precision_at_recall(scores, right, n_true, recall=recall),
        "max_recall": int(right.sum()) / n_true if n_true else float("nan"),
    }


def figure_rankings(
    predictions: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    snr: list[np.ndarray],
    classes: tuple[str, ...],
    *,
    cuts: tuple[float, ...] = (5.0, 10.0, 20.0, 50.0, 100.0),
    iou: float = 0.5,
    by: str = "mask",
    unmasked: list[dict[str, np.ndarray] | None] | None = None,
) -> list[dict[str, Any]]:
    """What :func:`precision_at_recall_by_snr` ranks, image by image.

    Parameters are those of :func:`precision_at_recall_by_snr`.

    Returns
    -------
    list of dict
        One per cut: ``snr_min``, and for ``star`` and ``galaxy`` a list with one
        ``(scores, right, n_true)`` per image: the ranking scores of the detections of the
        group that count at the cut, whether each is right, and the truth instances of the
        group at or above the cut. Resampling the images of these lists gives the figure's
        uncertainty (:mod:`skysift.evaluate.figure_uncertainty`).
    """
    star = classes.index("star") + 1 if "star" in classes else -1
    matched, on_unmasked = figure_matches(predictions, targets, by=by, iou=iou, unmasked=unmasked)
    overlaps: dict[int, np.ndarray] = {}  # per image, computed once for every cut that needs it

    def overlap_of(image: int) -> np.ndarray:
        if image not in overlaps:
            overlaps[image] = overlap_matrix(predictions[image], targets[image], by=by)
        return overlaps[image]

    out = []
    for cut in cuts:
        ranked: dict[str, Any] = {"snr_min": float(cut), "star": [], "galaxy": []}
        for image, (prediction, target, values, truth_index, found) in enumerate(
            zip(predictions, targets, snr, matched, on_unmasked, strict=True)
        ):
            required = np.asarray(values, dtype=float) >= cut
            counts = counted_detections(
                prediction,
                target,
                truth_index,
                found,
                required,
                by=by,
                overlap=functools.partial(overlap_of, image),
            )
            true_star = np.asarray(target["labels"]) == star
            ranking = np.asarray(prediction.get("detection_scores", prediction["scores"]))
            predicted_star = np.asarray(prediction["labels"]) == star
            for group in ("star", "galaxy"):
                in_group = true_star if group == "star" else ~true_star
                mine = np.flatnonzero(
                    (predicted_star if group == "star" else ~predicted_star) & counts
                )
                ranked[group].append(
                    (
                        ranking[mine].astype(float),
                        np.asarray(_at(in_group, truth_index[mine]), dtype=bool),
                        int((in_group & required).sum()),
                    )
                )
        out.append(ranked)
    return out


def figure_matches(
    predictions: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    *,
    by: str = "mask",
    iou: float = 0.5,
    unmasked: list[dict[str, np.ndarray] | None] | None = None,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per image, the matches :func:`precision_at_recall_by_snr` scores.

    Returns
    -------
    truth_index : list of numpy.ndarray
        Per detection, the index of the truth instance it matched (one-to-one, greedy by
        score), or -1.
    on_unmasked : list of numpy.ndarray of bool
        Per detection, whether it was taken as a truth source without a mask
        (:func:`unmasked_detections`).
    """
    matched, on_unmasked = [], []
    for k, (prediction, target) in enumerate(zip(predictions, targets, strict=True)):
        p, t = match_predictions(prediction, target, by=by, iou=iou)
        truth_index = np.full(len(prediction["scores"]), -1, dtype=np.int64)
        truth_index[p] = t
        matched.append(truth_index)
        sources = None if unmasked is None else unmasked[k]
        on_unmasked.append(unmasked_detections(prediction, truth_index >= 0, sources))
    return matched, on_unmasked


def counted_detections(
    prediction: dict[str, Any],
    target: dict[str, Any],
    truth_index: np.ndarray,
    on_unmasked: np.ndarray,
    required: np.ndarray,
    *,
    by: str = "mask",
    overlap=None,
) -> np.ndarray:
    """Which detections of one image count, right or wrong, for an S/N cut.

    A detection is neutral when it found a truth source without a mask, matched a truth
    instance below the cut (``~required``), or matched nothing but sits on such an instance
    that no detection matched: the instance its mask (``by="box"``: its box) overlaps most,
    whatever the IoU, its mask drawn too wide or too narrow to match (one detection per
    instance, the one overlapping it most). Every other detection counts. ``truth_index``
    and ``on_unmasked`` come from :func:`figure_matches`; ``overlap``, when given, is a
    callable returning this image's :func:`overlap_matrix` (so that several cuts share one).
    """
    neutral = on_unmasked | _at(~required, truth_index)
    n_true = len(np.asarray(target["labels"]))
    taken = np.zeros(n_true, dtype=bool)
    taken[truth_index[truth_index >= 0]] = True
    faint = ~np.asarray(required, dtype=bool) & ~taken
    free = np.flatnonzero(~neutral & (truth_index < 0))
    if faint.any() and free.size:
        whole = overlap() if overlap is not None else overlap_matrix(prediction, target, by=by)
        overlaps = whole[free]
        best = overlaps.argmax(axis=1)
        on_faint = (overlaps.max(axis=1) > 0) & faint[best]
        for instance in np.unique(best[on_faint]):
            mine = np.flatnonzero(on_faint & (best == instance))
            neutral[free[mine[np.argmax(overlaps[mine, instance])]]] = True
    return ~neutral


def overlap_matrix(prediction: dict[str, Any], target: dict[str, Any], *, by: str = "mask"):
    """``(n_pred, n_true)`` mask IoU (``by="box"``: box IoU) of one image's detections with
    its truth instances."""
    if by not in ("mask", "box"):
        raise ValueError(f"by must be 'mask' or 'box'; got {by!r}")
    if by == "mask":
        return mask_iou_matrix(
            _boolean_masks(prediction["masks"]), np.asarray(target["masks"], dtype=bool)
        )
    return box_iou_matrix(prediction["boxes"], target["boxes"])


def _at(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``values[index]`` where ``index >= 0``, False elsewhere (also when ``values`` is empty)."""
    out = np.zeros(np.shape(index), dtype=bool)
    valid = np.asarray(index) >= 0
    out[valid] = np.asarray(values, dtype=bool)[np.asarray(index)[valid]]
    return out


def confusion_statistics(
    predictions: list[dict[str, Any]],
    targets: list[dict[str, Any]],
    classes: tuple[str, ...],
    *,
    score_threshold: float = 0.5,
    iou: float = 0.5,
    by: str = "mask",
    unmasked: list[dict[str, np.ndarray] | None] | None = None,
) -> dict[str, Any]:
    """Matched-instance statistics over a set of images.

    Predictions above ``score_threshold`` are matched one-to-one to truth masks (``by="box"``:
    boxes, for box-only detectors) by IoU
    (class-agnostic); the class confusion matrix counts the matched pairs, with an extra
    ``missed`` column (truth without a match) and ``spurious`` row (unmatched predictions,
    except those on a truth source without a mask when ``unmasked`` gives them per image;
    see :func:`unmasked_detections`, and the ``on_unmasked`` count).

    Returns
    -------
    dict
        ``confusion`` (rows: truth classes + spurious; columns: predicted classes + missed),
        per-class ``precision``, ``recall``, ``f1``, the ``accuracy`` of the class of matched
        pairs, and ``precision_at_80_recall`` for stars and for galaxies (any galaxy class),
        ranked over all predictions by ``detection_scores`` where present, else ``scores``
        (the Burke et al. figure; see :func:`precision_at_recall_by_snr`).
    """
    n = len(classes)
    confusion = np.zeros((n + 1, n + 1), dtype=np.int64)
    grouped: dict[str, list[tuple[float, bool]]] = {"star": [], "galaxy": []}
    n_group = {"star": 0, "galaxy": 0}
    n_on_unmasked = 0
    star = classes.index("star") + 1 if "star" in classes else -1
    for index, (prediction, target) in enumerate(zip(predictions, targets, strict=True)):
        scores = np.asarray(prediction["scores"], dtype=float)
        ranking = np.asarray(prediction.get("detection_scores", scores), dtype=float)
        labels = np.asarray(prediction["labels"], dtype=np.int64)
        true_labels = np.asarray(target["labels"], dtype=np.int64)
        p, t = match_predictions(prediction, target, by=by, iou=iou)
        matched_truth = np.full(len(scores), -1, dtype=np.int64)
        matched_truth[p] = true_labels[t]
        found = unmasked_detections(
            prediction, matched_truth >= 0, None if unmasked is None else unmasked[index]
        )
        n_group["star"] += int((true_labels == star).sum())
        n_group["galaxy"] += int((true_labels != star).sum())
        for k in np.flatnonzero(~found):
            group = "star" if labels[k] == star else "galaxy"
            truth_group = (
                None if matched_truth[k] < 0 else ("star" if matched_truth[k] == star else "galaxy")
            )
            grouped[group].append((ranking[k], truth_group == group))
        confident = scores >= score_threshold
        keep = confident[p]
        for pk, tk in zip(p[keep], t[keep], strict=True):
            confusion[true_labels[tk] - 1, labels[pk] - 1] += 1
        matched = np.zeros(len(true_labels), dtype=bool)
        matched[t[keep]] = True
        for label in true_labels[~matched]:
            confusion[label - 1, n] += 1
        used = np.zeros(len(scores), dtype=bool)
        used[p[keep]] = True
        for label in labels[confident & ~used & ~found]:
            confusion[n, label - 1] += 1
        n_on_unmasked += int((confident & ~used & found).sum())
    diagonal = np.diag(confusion)[:n].astype(float)
    predicted = confusion[:, :n].sum(axis=0).astype(float)
    truth = confusion[:n].sum(axis=1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = diagonal / predicted
        recall = diagonal / truth
        f1 = 2 * precision * recall / (precision + recall)
    pairs = confusion[:n, :n]
    return {
        "classes": list(classes),
        "confusion": confusion.tolist(),
        "precision": dict(zip(classes, precision.tolist(), strict=True)),
        "recall": dict(zip(classes, recall.tolist(), strict=True)),
        "f1": dict(zip(classes, f1.tolist(), strict=True)),
        "accuracy": float(np.trace(pairs) / pairs.sum()) if pairs.sum() else float("nan"),
        "on_unmasked": n_on_unmasked,
        "precision_at_80_recall": {
            group: precision_at_recall(
                np.array([s for s, _ in rows]),
                np.array([ok for _, ok in rows], dtype=bool),
                n_group[group],
            )
            for group, rows in grouped.items()
        },
    }
