"""Galaxy types from size-normalized stamps: the segmenter's second look at each galaxy.

:func:`galaxy_stamp` resamples a square around an instance's box to a fixed ``64 x 64``
stamp (Gaussian anti-aliasing before bilinear sampling when shrinking), so a 20-pixel and a
200-pixel galaxy both fill it. :class:`GalaxyTyper` runs the shipped ``morphology`` network
(:mod:`skysift.models.morphology`) on such stamps and gives elliptical / spiral / other
probabilities; :func:`retype_galaxies` applies it to a detector's galaxy instances (one
instance per object: duplicates of different galaxy classes are merged first).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from skysift.errors import InvalidParameterError

__all__ = ["GalaxyTyper", "galaxy_stamp", "galaxy_stamps", "retype_galaxies"]

#: Stamp side relative to the longer side of the instance box.
STAMP_PADDING = 1.25
#: Smallest square (pixels) a stamp is cut from: tiny boxes keep some context.
MIN_STAMP_SIDE = 16.0


def galaxy_stamp(
    data: np.ndarray,
    box: Sequence[float],
    *,
    size: int = 64,
    padding: float = STAMP_PADDING,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """A ``(bands, size, size)`` float32 stamp of the square around ``box``.

    Parameters
    ----------
    data : numpy.ndarray
        ``(bands, height, width)`` normalized image (sky 0).
    box : sequence of 4 floats
        ``x1, y1, x2, y2`` in torchvision's convention: pixel edges, pixel ``i`` spans
        ``[i, i + 1)``.
    size : int
        Stamp side.
    padding : float
        Square side as a multiple of the box's longer side (at least :data:`MIN_STAMP_SIDE`).
    shift : tuple of float
        Offset of the square's centre, as a fraction of its side (training jitter).

    Returns
    -------
    numpy.ndarray
        The stamp; parts of the square outside the image are 0 (the normalized sky).
    """
    from scipy import ndimage

    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3:
        raise InvalidParameterError(f"data must be (bands, height, width); got {data.shape}")
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(max(x2 - x1, y2 - y1) * padding, MIN_STAMP_SIDE)
    # centre in 0-based pixel-centre coordinates
    cx = (x1 + x2) / 2 - 0.5 + shift[0] * side
    cy = (y1 + y2) / 2 - 0.5 + shift[1] * side
    step = side / size
    offsets = (np.arange(size) + 0.5) * step - side / 2
    sigma = max(step - 1.0, 0.0) / 2.0
    context = int(np.ceil(4 * sigma)) + 2
    height, width = data.shape[1:]
    r0 = max(int(np.floor(cy - side / 2)) - context, 0)
    r1 = min(int(np.ceil(cy + side / 2)) + context + 1, height)
    c0 = max(int(np.floor(cx - side / 2)) - context, 0)
    c1 = min(int(np.ceil(cx + side / 2)) + context + 1, width)
    stamp = np.zeros((data.shape[0], size, size), dtype=np.float32)
    if r0 >= r1 or c0 >= c1:
        return stamp
    rows, cols = np.meshgrid(cy + offsets - r0, cx + offsets - c0, indexing="ij")
    for band, plane in enumerate(data[:, r0:r1, c0:c1]):
        if sigma > 0:
            plane = ndimage.gaussian_filter(plane, sigma, mode="constant")
        stamp[band] = ndimage.map_coordinates(
            plane, [rows, cols], order=1, mode="constant", cval=0.0
        )
    return stamp


def galaxy_stamps(data: np.ndarray, boxes: np.ndarray, *, size: int = 64) -> np.ndarray:
    """:func:`galaxy_stamp` of every box: ``(n, bands, size, size)`` float32."""
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    out = np.zeros((len(boxes), np.shape(data)[0], size, size), dtype=np.float32)
    for k, box in enumerate(boxes):
        out[k] = galaxy_stamp(data, box, size=size)
    return out


class GalaxyTyper:
    """The shipped galaxy-type network: stamps -> elliptical / spiral / other probabilities.

    Parameters
    ----------
    model : str
        Shipped model name.
    backend : str
        ``auto`` (ONNX Runtime when installed), ``onnx`` or ``torch``.
    module : torch.nn.Module, optional
        A network to use instead (training, tests); needs ``card``.
    card : dict, optional
    batch_size : int
        Stamps per network call.
    """

    def __init__(
        self,
        model: str = "morphology",
        *,
        backend: str = "auto",
        module=None,
        card: dict[str, Any] | None = None,
        batch_size: int = 128,
    ) -> None:
        from skysift.models.registry import load_card
        from skysift.models.runtime import make_runner, shipped_runner

        if module is None:
            self.card = load_card(model)
            self._runner = shipped_runner(model, backend=backend, activation="softmax")
        else:
            if card is None:
                raise InvalidParameterError("a custom module needs its card")
            self.card = card
            self._runner = make_runner(module, backend, activation="softmax")
        config = self.card["architecture"]["config"]
        self.classes: tuple[str, ...] = tuple(config["classes"])
        self.stamp_size = int(config["stamp"])
        self.in_channels = int(config["in_channels"])
        self.batch_size = batch_size

    def probabilities(self, stamps: np.ndarray) -> np.ndarray:
        """``(n, classes)`` probabilities of ``(n, bands, size, size)`` stamps."""
        stamps = np.ascontiguousarray(stamps, dtype=np.float32)
        expected = (self.in_channels, self.stamp_size, self.stamp_size)
        if stamps.ndim != 4 or stamps.shape[1:] != expected:
            raise InvalidParameterError(
                f"stamps must be (n, {', '.join(map(str, expected))}); got {stamps.shape}"
            )
        if len(stamps) == 0:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate(
            [
                self._runner(stamps[i : i + self.batch_size])
                for i in range(0, len(stamps), self.batch_size)
            ]
        )

    def __call__(self, data: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Probabilities for the instances of ``boxes`` (x1, y1, x2, y2) in ``data``."""
        data = np.asarray(data)
        if data.shape[0] == 1 and self.in_channels > 1:
            data = np.repeat(data, self.in_channels, axis=0)
        return self.probabilities(galaxy_stamps(data, boxes, size=self.stamp_size))


def retype_galaxies(
    prediction: dict[str, np.ndarray],
    data: np.ndarray,
    typer: GalaxyTyper,
    *,
    classes: Sequence[str],
    merge_iou: float = 0.5,
) -> dict[str, np.ndarray]:
    """A detector's prediction with its galaxy instances typed by ``typer``.

    Detectors that score each class separately (torchvision's R-CNNs) can report one object
    twice, e.g. as an elliptical and as a spiral. Galaxy instances (any class that the typer
    knows) are therefore first reduced to one per object (greedy, by score, box IoU >=
    ``merge_iou``); each survivor gets the typer's most probable class, and its score becomes
    its detection score times that class's probability. Other instances (stars) are kept as
    they are. The detection scores before typing are returned as ``detection_scores`` (kept
    if the input already has them): they rank sources as stars or galaxies, whatever their
    galaxy type. The input is not modified.

    Parameters
    ----------
    prediction : dict
        ``boxes (n, 4)``, ``labels (n,)`` (1-based into ``classes``), ``scores (n,)`` and any
        other per-instance arrays (e.g. ``masks``), all indexed alike.
    data : numpy.ndarray
        ``(bands, height, width)`` normalized image the boxes refer to.
    typer : GalaxyTyper
    classes : sequence of str
        The detector's class names (label ``k`` is ``classes[k - 1]``).
    merge_iou : float
        Box IoU above which two galaxy instances are the same object.
    """
    boxes = np.asarray(prediction["boxes"], dtype=float).reshape(-1, 4)
    labels = np.asarray(prediction["labels"])
    scores = np.asarray(prediction["scores"], dtype=float)
    names = np.array(classes)[labels - 1] if labels.size else np.array([], dtype=str)
    galaxy = np.isin(names, typer.classes)
    order = np.flatnonzero(galaxy)[np.argsort(-scores[galaxy], kind="stable")]
    kept: list[int] = []
    if order.size:
        overlaps = _box_iou(boxes[order])
        taken = np.zeros(order.size, dtype=bool)
        for i in range(order.size):
            if taken[i]:
                continue
            kept.append(int(order[i]))
            taken |= overlaps[i] >= merge_iou
    keep = np.sort(np.concatenate([np.flatnonzero(~galaxy), kept]).astype(np.intp))
    out = {key: np.asarray(value)[keep] for key, value in prediction.items()}
    out.setdefault("detection_scores", np.asarray(prediction["scores"])[keep])
    if kept:
        kept_arr = np.array(kept)
        out["labels"], out["scores"] = _most_probable_types(
            out, np.searchsorted(keep, kept_arr), scores[kept_arr], data, typer, classes
        )
    return out


def _most_probable_types(prediction, rows, detection_scores, data, typer, classes):
    """``prediction``'s labels and scores with the instances ``rows`` given the typer's most
    probable galaxy class, scored ``detection_scores`` (one per row) times its probability."""
    probabilities = typer(data, np.asarray(prediction["boxes"], dtype=float).reshape(-1, 4)[rows])
    best = probabilities.argmax(axis=1)
    label_of = {name: index + 1 for index, name in enumerate(classes)}
    labels = np.array(prediction["labels"], copy=True)
    scores = np.array(prediction["scores"], copy=True)
    labels[rows] = [label_of[typer.classes[b]] for b in best]
    scores[rows] = detection_scores * probabilities[np.arange(len(best)), best]
    return labels, scores


def type_new_galaxies(
    prediction: dict[str, np.ndarray],
    before: dict[str, np.ndarray],
    data: np.ndarray,
    typer: GalaxyTyper,
    *,
    classes: Sequence[str],
) -> dict[str, np.ndarray]:
    """``prediction`` with a galaxy type for each instance that was a star in ``before``
    and is a galaxy now (a later stage, such as the colour typer, made it one).

    Each gets the typer's most probable class, and its score becomes its detection score
    times that class's probability, as :func:`retype_galaxies` gives the detector's
    galaxies. ``before`` and ``prediction`` hold the same instances in the same order;
    ``data`` is the ``(bands, height, width)`` normalized image the boxes refer to. The
    inputs are not modified.
    """
    star = list(classes).index("star") + 1
    was_star = np.asarray(before["labels"]) == star
    labels = np.asarray(prediction["labels"])
    new = np.flatnonzero(was_star & (labels != star))
    if not new.size:
        return dict(prediction)
    detection = np.asarray(prediction.get("detection_scores", prediction["scores"]), dtype=float)
    labels, scores = _most_probable_types(prediction, new, detection[new], data, typer, classes)
    return dict(prediction) | {"labels": labels, "scores": scores}


def _box_iou(boxes: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``(n, 4)`` x1, y1, x2, y2 boxes."""
    x1, y1, x2, y2 = boxes.T
    width = np.clip(np.minimum(x2[:, None], x2) - np.maximum(x1[:, None], x1), 0, None)
    height = np.clip(np.minimum(y2[:, None], y2) - np.maximum(y1[:, None], y1), 0, None)
    inter = width * height
    area = (x2 - x1) * (y2 - y1)
    union = area[:, None] + area - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
