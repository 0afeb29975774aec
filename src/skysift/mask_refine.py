"""Redraw small instances' masks from a native-pixel stamp (the segmenter's mask refiner).

Mask R-CNN draws each mask inside its box, resampled to the mask head's grid; when the box of
a faint galaxy comes out about twice too large, the mask fills it (docs/models.md, session
28). The refiner draws the mask again, free of the box: a small U-Net sees a
:data:`STAMP` x :data:`STAMP` stamp of the normalized bands at native pixels, centred on the
instance's box, with the detector's mask of the instance, the strongest mask of every other
instance and the PSF FWHM as extra channels (and, for a refiner trained with it, the stamp's
measured background noise: :func:`with_noise_channel`), and gives the instance's mask
probability on the stamp. It sees the instances the detector scores at :data:`MIN_SCORE` or
more (its raw score, the larger of P(star) and P(galaxy), before any second look); instances
whose box is larger than :data:`MAX_BOX` px, and fainter detections, keep the detector's mask.

It was trained (:mod:`skysift.train.mask_refiner`) to draw the truth mask of the source the
detector's mask overlaps most, on detections of the typical fields of Burke et al.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "MAX_BOX",
    "MIN_SCORE",
    "NOISE_SCALE",
    "STAMP",
    "MaskRefiner",
    "crop_stamp",
    "raw_scores",
    "redrawn_stamps",
    "refinable",
    "refined_masks",
    "refiner_inputs",
    "stamp_noise",
    "stamp_origins",
    "whole_image_pieces",
    "with_noise_channel",
]

#: Side of the refiner's stamp (px); a multiple of the U-Net's 2 ** (levels - 1).
STAMP = 64
#: Instances with a box side above this (px) keep the detector's mask.
MAX_BOX = 40
#: The PSF channel holds the FWHM (px) over this.
PSF_SCALE = 5.0
#: The refiner sees (as the instance or as a neighbour) detections with a raw score this high.
MIN_SCORE = 0.3
#: The noise channel holds the stamp's background noise over this: the sky noise of an image
#: normalized by its own statistics (one sky sigma is 1 / softening = 0.25 normalized units).
NOISE_SCALE = 0.25


def raw_scores(prediction: dict[str, Any]) -> np.ndarray:
    """The detector's own score of each instance: the larger of ``p_star`` and ``p_galaxy``
    (kept through a second look), else ``scores``."""
    if "p_star" in prediction and "p_galaxy" in prediction:
        return np.maximum(
            np.asarray(prediction["p_star"], float), np.asarray(prediction["p_galaxy"], float)
        )
    return np.asarray(prediction["scores"], float)


class MaskRefiner:
    """A shipped (or given) mask refiner: stamps in, mask probabilities out.

    Parameters
    ----------
    name : str
        Shipped model name (``skysift models``), or the path of a card written elsewhere.
    module, card : optional
        A trained :class:`skysift.models.unet.UNet` and its card, instead of loading one.
    augment : {None, "flips", "d4"}
        Test-time augmentation (:data:`skysift.augmentation.AUGMENTATIONS`): each stamp is
        shown in every view and the mask probabilities, taken back to the stamp, averaged.
    """

    def __init__(
        self, name: str = "mask_refiner", *, module=None, card=None, augment: str | None = None
    ) -> None:
        from skysift.augmentation import check_augment
        from skysift.models.registry import shipped_or_given

        check_augment(augment)
        self.module, self.card = shipped_or_given(name, module, card, what="mask refiner")
        #: test-time augmentation of every stamp (None: one view)
        self.augment = augment
        #: whether the network also sees the stamp's measured noise (:func:`with_noise_channel`)
        self.noise_channel = bool(self.card.get("inputs", {}).get("noise_channel", False))
        #: stamps noisier than this (:func:`stamp_noise`) keep the detector's mask: the
        #: refiner's training stamps were no noisier (None: no limit)
        limit = self.card.get("inputs", {}).get("max_noise")
        self.max_noise = None if limit is None else float(limit)
        channels = int(self.card["architecture"]["config"]["in_channels"])
        self.bands = channels - 3 - int(self.noise_channel)

    def __call__(self, stamps: np.ndarray) -> np.ndarray:
        """``(m, STAMP, STAMP)`` mask probabilities of ``(m, bands + 3, STAMP, STAMP)``
        stamps (:func:`refiner_inputs`; the noise channel, if the refiner has one, is added
        here)."""
        import torch

        from skysift.errors import InvalidParameterError

        stamps = np.asarray(stamps, dtype=np.float32)
        if stamps.ndim != 4 or stamps.shape[1:] != (self.bands + 3, STAMP, STAMP):
            raise InvalidParameterError(
                f"the mask refiner takes (m, {self.bands + 3}, {STAMP}, {STAMP}) stamps; got "
                f"{stamps.shape}"
            )
        from skysift.augmentation import AUGMENTATIONS, from_view, to_view

        if self.noise_channel:
            stamps = with_noise_channel(stamps, bands=self.bands)
        batch = torch.from_numpy(stamps)
        with torch.no_grad():
            views = [
                from_view(torch.sigmoid(self.module(to_view(batch, turns, flip))), turns, flip)
                for turns, flip in AUGMENTATIONS[self.augment]
            ]
        return torch.stack(views).mean(dim=0)[:, 0].numpy()


def stamp_noise(stamps: np.ndarray, *, bands: int) -> np.ndarray:
    """The background noise of each stamp (normalized units).

    Parameters
    ----------
    stamps : numpy.ndarray
        ``(m, bands + 3, STAMP, STAMP)`` stamps (:func:`refiner_inputs`).
    bands : int
        How many of the first channels are bands.

    Returns
    -------
    numpy.ndarray
        ``(m,)`` float32: per band, 1.4826 x the median absolute deviation of the pixels
        outside the instance's and its neighbours' masks (probability < 0.5) and inside the
        image (pixels off the image or masked are exactly 0); the median over the bands.
        A band with no such pixel counts as :data:`NOISE_SCALE`.
    """
    stamps = np.asarray(stamps, dtype=np.float32)
    planes = stamps[:, :bands].reshape(len(stamps), bands, -1)
    outside = (stamps[:, bands] < 0.5) & (stamps[:, bands + 1] < 0.5)
    good = outside.reshape(len(stamps), 1, -1) & (planes != 0)
    count = good.sum(axis=2)
    centre = _masked_median(planes, good, count)
    sigma = 1.4826 * _masked_median(np.abs(planes - centre[..., None]), good, count)
    sigma = np.where(count > 0, sigma, NOISE_SCALE)
    return np.median(sigma, axis=1).astype(np.float32)


def _masked_median(values: np.ndarray, good: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The median along the last axis of the ``good`` ``values`` (``count`` of them per row;
    a row without any gives a meaningless value): one sort with the others pushed to the end,
    three times faster than ``numpy.nanmedian`` here."""
    ordered = np.sort(np.where(good, values, np.inf), axis=-1)
    low = np.take_along_axis(ordered, np.maximum((count - 1) // 2, 0)[..., None], axis=-1)
    high = np.take_along_axis(ordered, (count // 2)[..., None], axis=-1)
    return 0.5 * (low[..., 0] + high[..., 0])


def with_noise_channel(stamps: np.ndarray, *, bands: int) -> np.ndarray:
    """``stamps`` with one more channel, last: :func:`stamp_noise` / :data:`NOISE_SCALE` (about
    1 where the image is as noisy as its normalization says; more where it is noisier, as in
    a shallower part of a mosaic or under added noise). ``stamps`` is not modified."""
    stamps = np.asarray(stamps, dtype=np.float32)
    level = stamp_noise(stamps, bands=bands) / np.float32(NOISE_SCALE)
    channel = np.broadcast_to(level[:, None, None, None], (len(stamps), 1, *stamps.shape[2:]))
    return np.concatenate([stamps, channel], axis=1)


def refinable(boxes: np.ndarray) -> np.ndarray:
    """Which instances the refiner redraws: box sides (``x0, y0, x1, y1``) <= :data:`MAX_BOX`."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sides = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
    return sides <= MAX_BOX


def stamp_origins(boxes: np.ndarray) -> np.ndarray:
    """``(n, 2)`` integer ``(row, col)`` of each stamp's first pixel: the stamp centred on
    the box."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre_x = 0.5 * (boxes[:, 0] + boxes[:, 2])
    centre_y = 0.5 * (boxes[:, 1] + boxes[:, 3])
    return np.stack(
        [np.floor(centre_y - STAMP / 2 + 0.5), np.floor(centre_x - STAMP / 2 + 0.5)], axis=1
    ).astype(np.int64)


def crop_stamp(plane: np.ndarray, row: int, col: int) -> np.ndarray:
    """The :data:`STAMP`-square of ``plane`` (..., H, W) from ``(row, col)``, zero outside."""
    height, width = plane.shape[-2:]
    out = np.zeros((*plane.shape[:-2], STAMP, STAMP), dtype=np.float32)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + STAMP, height), min(col + STAMP, width)
    if r1 > r0 and c1 > c0:
        out[..., r0 - row : r1 - row, c0 - col : c1 - col] = plane[..., r0:r1, c0:c1]
    return out


def whole_image_pieces(masks: np.ndarray) -> list[tuple[int, int, np.ndarray]]:
    """Each whole-image mask (``(n, 1, H, W)`` or ``(n, H, W)`` probabilities) as a piece:
    ``(top row, left column, probabilities)`` of the smallest rectangle holding its non-zero
    pixels (an empty mask is a 0x0 piece)."""
    probabilities = np.asarray(masks, dtype=np.float32)
    if probabilities.ndim == 4:
        probabilities = probabilities[:, 0]
    pieces = []
    for mask in probabilities:
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        if not rows.size:
            pieces.append((0, 0, mask[:0, :0]))
            continue
        top, left = int(rows[0]), int(cols[0])
        pieces.append((top, left, mask[top : rows[-1] + 1, left : cols[-1] + 1]))
    return pieces


def _paste_piece(out: np.ndarray, piece, row: int, col: int, *, maximum: bool) -> None:
    """Put ``piece`` (image coordinates) into the stamp ``out`` whose first pixel is ``(row,
    col)``: replacing, or keeping the larger value with ``maximum``."""
    top, left, values = piece
    r0, c0 = max(top, row), max(left, col)
    r1 = min(top + values.shape[0], row + STAMP)
    c1 = min(left + values.shape[1], col + STAMP)
    if r1 <= r0 or c1 <= c0:
        return
    source = values[r0 - top : r1 - top, c0 - left : c1 - left]
    target = out[r0 - row : r1 - row, c0 - col : c1 - col]
    if maximum:
        np.maximum(target, source, out=target)
    else:
        target[...] = source


def refiner_inputs(
    image: np.ndarray, masks, boxes: np.ndarray, *, psf_fwhm: float, only=None
) -> tuple[np.ndarray, np.ndarray]:
    """The refiner's stamps of every instance of an image.

    Parameters
    ----------
    image : numpy.ndarray
        ``(bands, H, W)`` normalized image (as the segmenter sees it, without a PSF channel).
    masks : numpy.ndarray or list
        ``(n, 1, H, W)`` or ``(n, H, W)`` mask probabilities of the instances, or each one's
        piece ``(top row, left column, probabilities)`` (:func:`whole_image_pieces`; zero
        outside it).
    boxes : numpy.ndarray
        ``(n, 4)`` boxes ``x0, y0, x1, y1``.
    psf_fwhm : float
        The image's PSF FWHM (px).
    only : array of int, optional
        The instances whose stamps are made (indices; default: every one). Every instance
        is still a neighbour in the others' stamps.

    Returns
    -------
    stamps : numpy.ndarray
        ``(n, bands + 3, STAMP, STAMP)`` float32: the bands, the instance's mask, the
        strongest mask of every other instance, the PSF channel (``n``: those of ``only``).
    origins : numpy.ndarray
        ``(n, 2)`` ``(row, col)`` of each stamp's first pixel in the image.
    """
    pieces = masks if isinstance(masks, list) else whole_image_pieces(masks)
    made = np.arange(len(pieces)) if only is None else np.asarray(only, dtype=int)
    bands = image.shape[0]
    origins = stamp_origins(np.asarray(boxes).reshape(-1, 4)[made])
    stamps = np.zeros((made.size, bands + 3, STAMP, STAMP), dtype=np.float32)
    if not made.size:
        return stamps, origins
    tops = np.array([p[0] for p in pieces])
    lefts = np.array([p[1] for p in pieces])
    bottoms = tops + np.array([p[2].shape[0] for p in pieces])
    rights = lefts + np.array([p[2].shape[1] for p in pieces])
    for i, (k, (row, col)) in enumerate(zip(made, origins, strict=True)):
        stamps[i, :bands] = crop_stamp(image, row, col)
        _paste_piece(stamps[i, bands], pieces[k], row, col, maximum=False)
        near = (tops < row + STAMP) & (bottoms > row) & (lefts < col + STAMP) & (rights > col)
        near[k] = False
        for j in np.flatnonzero(near):
            _paste_piece(stamps[i, bands + 1], pieces[j], row, col, maximum=True)
    stamps[:, bands + 2] = psf_fwhm / PSF_SCALE
    return stamps, origins


def refined_masks(
    prediction: dict[str, Any],
    image: np.ndarray,
    refiner,
    *,
    psf_fwhm: float,
    batch_size: int = 128,
) -> dict[str, Any]:
    """``prediction`` with the masks of its small instances drawn by ``refiner``.

    Parameters
    ----------
    prediction : dict
        The segmenter's detections of one image (``boxes``, ``scores`` or ``p_star`` and
        ``p_galaxy``, ``masks`` as ``(n, 1, H, W)`` probabilities); not modified.
    image : numpy.ndarray
        The normalized ``(bands, H, W)`` image.
    refiner : callable
        Maps a float32 ``(m, bands + 3, STAMP, STAMP)`` array to ``(m, STAMP, STAMP)`` mask
        probabilities; if it has a ``max_noise`` (:class:`MaskRefiner`), stamps noisier than
        that (:func:`stamp_noise`) are not given to it.
    psf_fwhm : float
        The image's PSF FWHM (px).

    Returns
    -------
    dict
        A copy of ``prediction`` whose ``masks`` hold, for every instance with a box of at
        most :data:`MAX_BOX` px and a raw score (:func:`raw_scores`) of at least
        :data:`MIN_SCORE` (and a stamp within the refiner's ``max_noise``), the refiner's
        probabilities on its stamp (zero outside).
    """
    masks = np.asarray(prediction["masks"], dtype=np.float32)
    out = dict(prediction)
    redrawn = redrawn_stamps(
        image,
        whole_image_pieces(masks),
        prediction["boxes"],
        raw_scores(prediction),
        refiner,
        psf_fwhm=psf_fwhm,
        batch_size=batch_size,
    )
    if not redrawn:
        return out
    new = masks.copy()
    height, width = masks.shape[-2:]
    for k, (row, col, probability) in redrawn.items():
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + STAMP, height), min(col + STAMP, width)
        new[k, 0] = 0.0
        new[k, 0, r0:r1, c0:c1] = probability[r0 - row : r1 - row, c0 - col : c1 - col]
    out["masks"] = new
    return out


def redrawn_stamps(
    image: np.ndarray,
    pieces: list,
    boxes: np.ndarray,
    scores: np.ndarray,
    refiner,
    *,
    psf_fwhm: float,
    batch_size: int = 128,
    only=None,
) -> dict[int, tuple[int, int, np.ndarray]]:
    """The refiner's masks of an image's instances, on their stamps.

    Parameters
    ----------
    image : numpy.ndarray
        The normalized ``(bands, H, W)`` image.
    pieces : list
        Each instance's mask as ``(top row, left column, probabilities)``
        (:func:`whole_image_pieces`).
    boxes, scores : numpy.ndarray
        Each instance's box ``x0, y0, x1, y1`` and raw detector score (:func:`raw_scores`).
    refiner : callable
        As :func:`refined_masks` takes it.
    psf_fwhm : float
        The image's PSF FWHM (px).
    only : array of bool, optional
        The instances that may be redrawn (default: every one); the others are still
        their neighbours (the ``Segmenter`` redraws only the instances a tile keeps).

    Returns
    -------
    dict
        ``{instance index: (row, col, probabilities)}`` for each instance the refiner
        redraws (box side <= :data:`MAX_BOX`, score >= :data:`MIN_SCORE`, stamp noise
        within the refiner's ``max_noise`` if it has one): the first pixel of its stamp and
        the ``(STAMP, STAMP)`` mask probabilities. Instances below :data:`MIN_SCORE` are not
        shown to it as neighbours either.
    """
    boxes = np.asarray(boxes).reshape(-1, 4)
    seen = np.flatnonzero(np.asarray(scores) >= MIN_SCORE)
    wanted = refinable(boxes[seen])
    if only is not None:
        wanted &= np.asarray(only, dtype=bool)[seen]
    chosen = np.flatnonzero(wanted)  # into seen
    if not chosen.size:
        return {}
    stamps, origins = refiner_inputs(
        image, [pieces[k] for k in seen], boxes[seen], psf_fwhm=psf_fwhm, only=chosen
    )
    max_noise = getattr(refiner, "max_noise", None)
    if max_noise is not None:
        bands = stamps.shape[1] - 3
        within = stamp_noise(stamps, bands=bands) <= max_noise
        chosen, stamps, origins = chosen[within], stamps[within], origins[within]
        if not chosen.size:
            return {}
    drawn = np.concatenate(
        [refiner(stamps[start : start + batch_size]) for start in range(0, chosen.size, batch_size)]
    )
    return {
        int(seen[j]): (int(row), int(col), probability)
        for j, (row, col), probability in zip(chosen, origins, drawn, strict=True)
    }
