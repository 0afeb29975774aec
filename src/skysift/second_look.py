"""A PSF-aware star/galaxy second look at the segmenter's instances.

The Mask R-CNN decides star or galaxy from features pooled over each box at the scale of its
feature-pyramid level. For a compact galaxy that is little more than the PSF, and the
segmenter's largest loss in Burke et al.'s figure is compact galaxies called stars
(``benchmarks/segmenter_limits.py``, docs/models.md). The second look is ASID-C's dual-branch
network (:class:`skysift.models.stargalaxy.StarGalaxyNet`) on a 32x32 cutout at the image's own
pixel scale, centred on each instance's mask. Its channels are the segmenter's normalized bands
plus the instance's own mask, so that a neighbour in the cutout is not taken for the source;
its context branch gets the PSF FWHM, ``log(FWHM / 4.5 px)``, because only the PSF tells a
compact galaxy from a star. A second look with three classes (galaxy, star, false) also
learns the detections that match no source, or whose mask misses it: the rest of what keeps
the galaxies below Burke et al.'s target.

A 32x32 window at the image's pixel scale shows only the core of a large galaxy, whose mask
then fills it, as does the mask of a false detection nested inside that galaxy. A second look
trained with ``cutout: zoomed`` sees each instance whole instead: its window is zoomed out by
the whole number :func:`instance_zooms` picks (block averages of ``z x z`` pixels), and its
PSF input is the FWHM in those coarser pixels. Compact instances, where star and galaxy are
decided, keep the image's pixel scale. ``cutout: both`` stacks the native and the zoomed
cutouts as channels, so a large instance is seen whole and its core resolved.

:func:`relook` applies it to a detector's prediction: each instance takes the more probable
of the second look's star and galaxy, and its score becomes P(source) x P(group), where
P(source) is the detector's P(star) + P(galaxy). A galaxy keeps its type; a star made a galaxy
becomes ``other`` until the galaxy typer (:mod:`skysift.morphology`) types it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from skysift.models.stargalaxy_inputs import ShippedStarGalaxyNetwork

__all__ = [
    "SecondLook",
    "cutout_views",
    "instance_cutouts",
    "instance_zooms",
    "look_inputs",
    "looks_probabilities",
    "mask_coverage",
    "relook",
    "require_same_classes",
    "with_star_fraction",
]

#: Cutout side (pixels).
CUTOUT = 32

#: A card's ``cutout``: ``native`` (the image's pixel scale), ``zoomed``
#: (:func:`instance_zooms`) or ``both`` (the two stacked as channels; see :func:`look_inputs`).
CUTOUT_KINDS = ("native", "zoomed", "both")


def cutout_views(cutout: str) -> int:
    """How many cutouts of each instance a look of this ``cutout`` kind stacks (2 for
    ``both``, else 1); its network takes ``views x (bands + 1)`` channels."""
    return 2 if cutout == "both" else 1


#: A zoomed cutout leaves this much room around the instance: a mask ``e`` pixels across
#: is shown in a window of at least ``ZOOM_MARGIN * e`` pixels.
ZOOM_MARGIN = 1.25


def instance_zooms(masks, *, margin: float = ZOOM_MARGIN) -> np.ndarray:
    """The whole-number zoom that fits each instance, with ``margin``, into a 32x32 cutout.

    Parameters
    ----------
    masks : numpy.ndarray or sequence of (rows, cols)
        Each instance's mask (see :func:`instance_cutouts`).
    margin : float
        Window side over the mask's extent (its larger side, pixels).

    Returns
    -------
    numpy.ndarray
        ``(n,)`` int: 1 for an instance that fits at the image's pixel scale (or an empty
        mask), else the smallest ``z`` with ``32 z >= margin x extent``.
    """
    zooms = np.ones(len(masks), dtype=np.int64)
    for k, (rows, cols) in enumerate(_pixels(masks)):
        if len(rows):
            extent = max(np.ptp(rows), np.ptp(cols)) + 1
            zooms[k] = max(1, int(np.ceil(margin * extent / CUTOUT)))
    return zooms


def mask_coverage(masks, shape: tuple[int, int]) -> np.ndarray:
    """How many instances' masks cover each pixel.

    Parameters
    ----------
    masks : numpy.ndarray or sequence of (rows, cols)
        Every instance's mask (see :func:`instance_cutouts`).
    shape : tuple of int
        ``(height, width)`` of the image.

    Returns
    -------
    numpy.ndarray
        ``(height, width)`` int32 count, the input to ``instance_cutouts(coverage=)``.
    """
    if isinstance(masks, np.ndarray) and masks.ndim == 3:
        if masks.shape[1:] != tuple(shape):
            raise ValueError(f"masks of shape {masks.shape[1:]} for an image of {tuple(shape)}")
        return masks.astype(bool).sum(axis=0, dtype=np.int32)
    coverage = np.zeros(shape, dtype=np.int32)
    for rows, cols in _pixels(masks):
        np.add.at(coverage, (rows, cols), 1)
    return coverage


def instance_cutouts(bands: np.ndarray, masks, *, zooms=None, coverage=None) -> np.ndarray:
    """The second look's input cutouts.

    Parameters
    ----------
    bands : numpy.ndarray
        ``(bands, height, width)`` normalized image (the segmenter's input without a PSF
        channel).
    masks : numpy.ndarray or sequence of (rows, cols)
        Each instance's mask: an ``(n, height, width)`` boolean array, or the row and column
        indices of its pixels.
    zooms : numpy.ndarray, optional
        ``(n,)`` whole-number zoom of each cutout (:func:`instance_zooms`): the window is
        ``32 z`` pixels across, averaged over ``z x z`` blocks. Default 1 (the image's own
        pixel scale).
    coverage : numpy.ndarray, optional
        ``(height, width)`` count of the instances covering each pixel, each instance's own
        mask among them (:func:`mask_coverage` of every detection in the image, not only
        ``masks``). When given, a last channel shows the other instances' masks: the
        fraction of each block that another instance covers.

    Returns
    -------
    numpy.ndarray
        ``(n, bands + 1, 32, 32)`` float32 (``bands + 2`` with ``coverage``): the bands and
        the instance's own mask (the fraction of each block inside it), centred on the
        mask's centre of area (zero outside the image and for an empty mask).
    """
    bands = np.asarray(bands, dtype=np.float32)
    n_bands, height, width = bands.shape
    pixels = _pixels(masks)
    zooms = np.ones(len(pixels), np.int64) if zooms is None else np.asarray(zooms, np.int64)
    if zooms.shape != (len(pixels),) or (zooms < 1).any():
        raise ValueError(f"zooms must be {len(pixels)} whole numbers >= 1; got {zooms!r}")
    if coverage is not None and np.shape(coverage) != (height, width):
        raise ValueError(
            f"coverage must be the image's shape {(height, width)}; got {np.shape(coverage)}"
        )
    channels = n_bands + 1 + (coverage is not None)
    out = np.zeros((len(pixels), channels, CUTOUT, CUTOUT), dtype=np.float32)
    for k, (rows, cols) in enumerate(pixels):
        if not len(rows):
            continue
        side = CUTOUT * int(zooms[k])
        window = np.zeros((channels, side, side), dtype=np.float32)
        y0 = round(float(np.mean(rows))) - side // 2
        x0 = round(float(np.mean(cols))) - side // 2
        ys = slice(max(y0, 0), min(y0 + side, height))
        xs = slice(max(x0, 0), min(x0 + side, width))
        inner = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        window[(slice(0, n_bands), *inner)] = bands[:, ys, xs]
        inside = (rows >= y0) & (rows < y0 + side) & (cols >= x0) & (cols < x0 + side)
        window[n_bands, rows[inside] - y0, cols[inside] - x0] = 1.0
        if coverage is not None:  # covered by more instances than this one where it lies
            others = coverage[ys, xs] - window[(n_bands, *inner)]
            window[(n_bands + 1, *inner)] = others >= 1
        z = int(zooms[k])
        out[k] = window if z == 1 else window.reshape(-1, CUTOUT, z, CUTOUT, z).mean(axis=(2, 4))
    return out


def look_inputs(
    bands: np.ndarray, masks, *, psf_fwhm: float, cutout: str = "native", coverage=None
) -> tuple[np.ndarray, np.ndarray]:
    """A second look's cutouts and the PSF FWHM its seeing input is given, per instance.

    Parameters
    ----------
    bands, masks, psf_fwhm
        The normalized image, the instances' masks and the detection band's PSF FWHM in
        image pixels, as :meth:`SecondLook.probabilities` takes them.
    cutout : {"native", "zoomed", "both"}
        ``native``: :func:`instance_cutouts` at the image's pixel scale, with ``psf_fwhm``.
        ``zoomed``: zoomed to hold each instance (:func:`instance_zooms`), with the FWHM in
        the cutout's pixels (``psf_fwhm / z``). ``both``: the native channels, then the
        zoomed ones, with ``psf_fwhm``.
    coverage : numpy.ndarray, optional
        Every detection's :func:`mask_coverage`: each view then adds the neighbours'
        channel (:func:`instance_cutouts`).

    Returns
    -------
    cutouts : numpy.ndarray
        ``(n, channels, 32, 32)`` float32; ``channels`` is ``bands + 1`` (``bands + 2``
        with ``coverage``), twice that for ``both``.
    fwhm : numpy.ndarray
        ``(n,)`` FWHM for the seeing input.
    """
    if cutout not in CUTOUT_KINDS:
        raise ValueError(f"cutout must be one of {CUTOUT_KINDS}; got {cutout!r}")
    pixels = _pixels(masks)
    native = functools.partial(instance_cutouts, bands, pixels, coverage=coverage)
    if cutout == "native":
        return native(), np.full(len(pixels), float(psf_fwhm))
    zooms = instance_zooms(pixels)
    zoomed = native(zooms=zooms)
    if cutout == "zoomed":
        return zoomed, psf_fwhm / zooms
    both = np.concatenate([native(), zoomed], axis=1)
    return both, np.full(len(pixels), float(psf_fwhm))


def _pixels(masks) -> list:
    """Row and column indices of each instance's pixels."""
    return [np.nonzero(m) for m in masks] if isinstance(masks, np.ndarray) else list(masks)


class SecondLook(ShippedStarGalaxyNetwork):
    """A shipped second-look network (``"second_look"`` by default), ready to give P(star)
    for instances; ``module`` and ``card`` as for :class:`ShippedStarGalaxyNetwork`."""

    what = "second-look module"

    def __init__(self, name: str = "second_look", *, module=None, card=None) -> None:
        from skysift.errors import InvalidParameterError

        super().__init__(name, module=module, card=card)
        card = self.card
        if self.config.position_input or not self.config.seeing_input:
            raise InvalidParameterError(
                f"model {card['name']!r} is not a second look: it must take the seeing and "
                "no field position"
            )
        cutout = card.get("cutout", "native")
        if cutout not in CUTOUT_KINDS:
            raise InvalidParameterError(
                f"model {card['name']!r}: unknown cutout {cutout!r}; expected one of {CUTOUT_KINDS}"
            )
        #: how instances are cut (:data:`CUTOUT_KINDS`, :func:`look_inputs`)
        self.cutout = cutout
        #: whether each view has the neighbours' channel (the card's ``neighbours``): the
        #: other detections' masks (:func:`instance_cutouts`)
        self.neighbours = bool(card.get("neighbours", False))
        self.classes = tuple(card.get("classes", BINARY_CLASSES))
        fits = (
            self.classes == BINARY_CLASSES
            if self.config.outputs == 1
            else len(self.classes) == self.config.outputs
        )
        if not fits or not {"galaxy", "star"} <= set(self.classes):
            raise InvalidParameterError(
                f"model {card['name']!r}: classes {self.classes} do not fit its "
                f"{self.config.outputs} output(s); a second look needs galaxy and star"
            )

    @property
    def mask_refiner_name(self) -> str | None:
        """The mask refiner whose masks this look was trained on (its card's
        ``mask_refiner.name``), or None: it was trained on the detector's own masks."""
        return self.card.get("mask_refiner", {}).get("name")

    @functools.cached_property
    def mask_refiner(self):
        """The :class:`~skysift.mask_refine.MaskRefiner` that draws the masks this look sees
        (loaded on first use; the card's sha256 must be the refiner's), or None."""
        from skysift.errors import InvalidParameterError
        from skysift.mask_refine import MaskRefiner

        if self.mask_refiner_name is None:
            return None
        refiner = MaskRefiner(self.mask_refiner_name)
        expected = self.card["mask_refiner"].get("sha256")
        if expected is not None and refiner.card.get("sha256") != expected:
            raise InvalidParameterError(
                f"the {self.card['name']!r} second look was trained on the masks of "
                f"mask refiner {self.mask_refiner_name!r} with sha256 {expected}; the one "
                f"found has {refiner.card.get('sha256')}"
            )
        return refiner

    @property
    def trained_star_fraction(self) -> float | None:
        """Stars among the star and galaxy stamps the look was trained on (its card's
        ``trained_on.star_fraction``; None on a card written before it was recorded)."""
        value = self.card.get("trained_on", {}).get("star_fraction")
        return None if value is None else float(value)

    def require_trained_star_fraction(self) -> float:
        """:attr:`trained_star_fraction`, or a clear error naming the card that lacks it."""
        from skysift.errors import InvalidParameterError

        if self.trained_star_fraction is None:
            raise InvalidParameterError(
                f"the {self.card['name']!r} second look's card does not record the star "
                "fraction it was trained on (trained_on.star_fraction), so star_fraction "
                "cannot be applied"
            )
        return self.trained_star_fraction

    def sees_whole(self, masks) -> np.ndarray:
        """``(n,)`` bool: whether this look's cutout holds each instance whole.

        A ``native`` cutout is 32 pixels across at the image's scale: an instance wider or
        taller than that shows only its core, and the look's verdict on it is no better
        than the detector's (docs/models.md, session 18). Zoomed views hold every instance.
        """
        if self.cutout != "native":
            return np.ones(len(masks), dtype=bool)
        return instance_zooms(masks, margin=1.0) == 1

    @property
    def bands(self) -> int:
        """Image bands of the cutouts (the network's channels less the masks, per view)."""
        return self.config.in_channels // cutout_views(self.cutout) - 1 - self.neighbours

    def probabilities(
        self,
        bands: np.ndarray,
        masks,
        *,
        psf_fwhm: float,
        star_fraction: float | None = None,
        neighbours=(),
    ) -> np.ndarray:
        """``(n, classes)`` probabilities of each instance, columns as :attr:`classes`.

        Parameters
        ----------
        bands : numpy.ndarray
            ``(bands, height, width)`` normalized image.
        masks : numpy.ndarray or sequence of (rows, cols)
            Instance masks (see :func:`instance_cutouts`).
        psf_fwhm : float
            PSF FWHM of the detection band, pixels.
        star_fraction : float, optional
            Expected fraction of stars among the image's stars and galaxies: the
            probabilities are re-weighted from the training mix to it
            (:func:`with_star_fraction`). None keeps the training mix.
        neighbours : numpy.ndarray or sequence of (rows, cols)
            Masks of the image's other detections, not looked at here but shown in the
            neighbours' channel of a look that has one (:attr:`neighbours`) with ``masks``.
        """
        from skysift.errors import InvalidParameterError

        if bands.shape[0] != self.bands:
            raise InvalidParameterError(
                f"the {self.card['name']!r} second look takes {self.bands} bands; got "
                f"{bands.shape[0]}"
            )
        if not len(masks):
            return np.zeros((0, len(self.classes)))
        if star_fraction is not None:
            self.require_trained_star_fraction()
        coverage = None
        if self.neighbours:
            shape = bands.shape[1:]
            coverage = mask_coverage(masks, shape) + mask_coverage(neighbours, shape)
        cutouts, fwhm = look_inputs(
            bands, masks, psf_fwhm=psf_fwhm, cutout=self.cutout, coverage=coverage
        )
        context = self.config.context(np.zeros((len(masks), 2)), seeing_fwhm=fwhm)
        probabilities = predict_probabilities(self.module, cutouts, context)
        if star_fraction is None:
            return probabilities
        return with_star_fraction(
            probabilities,
            self.classes,
            trained=self.trained_star_fraction,
            expected=star_fraction,
        )


def with_star_fraction(
    probabilities: np.ndarray, classes: Sequence[str], *, trained: float, expected: float
) -> np.ndarray:
    """A classifier's probabilities for a population with another mix of stars and galaxies.

    Bayes' rule with new class priors (Saerens, Latinne & Decaestecker 2002, Neural
    Computation 14, 21): ``P'(c | x)`` is proportional to ``P(c | x) pi'(c) / pi(c)``. The
    star and galaxy priors move from the training mix (``trained`` stars among stars and
    galaxies) to ``expected``; their sum, and any other class's prior (``false``), stay.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(n, classes)`` probabilities, columns as ``classes``.
    classes : sequence of str
        Column names; must include ``star`` and ``galaxy``.
    trained, expected : float
        Fraction of stars among stars and galaxies, in (0, 1): in the training stamps, and
        in the images the look is applied to.

    Returns
    -------
    numpy.ndarray
        New ``(n, classes)`` probabilities (rows sum to 1); the input is not modified.
    """
    from skysift.errors import InvalidParameterError

    for name, value in (("trained", trained), ("expected", expected)):
        if not 0.0 < value < 1.0:
            raise InvalidParameterError(
                f"{name} star fraction must be in (0, 1) (stars among stars and galaxies); "
                f"got {value}"
            )
    weights = np.ones(len(classes))
    weights[list(classes).index("star")] = expected / trained
    weights[list(classes).index("galaxy")] = (1.0 - expected) / (1.0 - trained)
    weighted = np.asarray(probabilities, dtype=np.float64) * weights
    total = weighted.sum(axis=1, keepdims=True)
    return weighted / np.where(total > 0, total, 1.0)


#: Classes of a one-output second look (its sigmoid is P(star)).
BINARY_CLASSES = ("galaxy", "star")


def predict_probabilities(
    module, cutouts: np.ndarray, context: np.ndarray, *, batch: int = 1024
) -> np.ndarray:
    """``(n, classes)`` probabilities from a star/galaxy network, in batches (torch, no
    gradients): ``(1 - p, p)`` with ``p = sigmoid`` for one output, else the softmax."""
    import torch

    module.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(cutouts), batch):
            logits = module(
                torch.from_numpy(np.ascontiguousarray(cutouts[start : start + batch])),
                torch.from_numpy(np.ascontiguousarray(context[start : start + batch])),
            )
            if logits.ndim == 1:
                p = torch.sigmoid(logits)
                out.append(torch.stack([1 - p, p], dim=1).numpy().astype(np.float64))
            else:
                out.append(torch.softmax(logits, dim=1).numpy().astype(np.float64))
    n_classes = max(getattr(module.config, "outputs", 1), 2)
    return np.concatenate(out) if out else np.zeros((0, n_classes))


def relook(
    prediction: dict[str, np.ndarray],
    bands: np.ndarray,
    second_look: SecondLook | Sequence[SecondLook],
    *,
    psf_fwhm: float,
    classes: Sequence[str],
    mask_threshold: float = 0.5,
    masks=None,
    only_whole: bool = True,
    star_fraction: float | None = None,
    neighbours=(),
) -> dict[str, np.ndarray]:
    """A segmenter's prediction with each instance's star/galaxy group from ``second_look``.

    Parameters
    ----------
    prediction : dict
        ``labels (n,)`` (1-based into ``classes``), ``scores``, ``masks (n, 1, H, W)``
        probabilities and the heads' ``p_star`` and ``p_galaxy``; any other per-instance arrays
        are kept.
    bands : numpy.ndarray
        ``(bands, H, W)`` normalized image the masks refer to.
    second_look : SecondLook or sequence of SecondLook
        The look, or several looks of the same classes: their probabilities are averaged,
        each re-weighted to ``star_fraction`` from its own training mix and shown the masks
        it was trained on (:func:`looks_probabilities`).
    psf_fwhm : float
        PSF FWHM of the detection band, pixels.
    classes : sequence of str
        The detector's classes; must include ``star`` and ``other``.
    mask_threshold : float
        Mask probability above which a pixel belongs to the instance.
    masks : sequence of (rows, cols) or numpy.ndarray, optional
        The instances' pixels in ``bands`` (see :func:`instance_cutouts`), when the
        prediction's ``masks`` are not whole-image probabilities (the ``Segmenter``'s stay
        in their boxes). For a look trained on a mask refiner's masks
        (:attr:`SecondLook.mask_refiner`) they must be the masks it draws; without
        ``masks``, the prediction's are drawn again by it here. With several looks, a
        sequence of one such entry (or None) per look.
    only_whole : bool
        Decide again only the instances the look's cutout holds whole
        (:meth:`SecondLook.sees_whole`; with several looks, the first one's, on its masks);
        larger ones keep the detector's class and score.
        False re-decides every instance (the shipped looks' behaviour before session 18).
    star_fraction : float, optional
        Expected fraction of stars among the image's stars and galaxies; the look's
        probabilities are re-weighted to it from its training mix (:func:`with_star_fraction`).
        None keeps the training mix.
    neighbours : sequence of (rows, cols)
        Masks of detections in ``bands`` that are not in the prediction (the ``Segmenter``'s
        in a tile's margin): a look with the neighbours' channel shows them with the
        prediction's own (:meth:`SecondLook.probabilities`).

    Returns
    -------
    dict
        A new prediction: each instance the look decides is a star when P(star) >=
        P(galaxy), else a galaxy (a galaxy keeps its type, a former star becomes
        ``other``), with ``scores`` and ``detection_scores`` P(source) x P(group); an
        instance it does not decide keeps its class and score. ``p_star_second_look`` (and,
        with three classes, ``p_false_second_look``) are the network's, NaN where it did
        not decide. The input is not modified.
    """
    from skysift.errors import InvalidParameterError

    needed = ("p_star", "p_galaxy") + (("masks",) if masks is None else ())
    missing = [key for key in needed if key not in prediction]
    if missing:
        raise InvalidParameterError(
            f"the second look needs the segmenter's {', '.join(missing)} for each instance "
            "(a Mask R-CNN segmenter with the star_or_galaxy class decision)"
        )
    star, other = classes.index("star") + 1, classes.index("other") + 1
    looks = (second_look,) if isinstance(second_look, SecondLook) else tuple(second_look)
    each = (masks,) if isinstance(second_look, SecondLook) else masks
    if each is None:
        each = (None,) * len(looks)
    if len(each) != len(looks):
        raise InvalidParameterError(
            f"relook got masks for {len(each)} looks; there are {len(looks)}"
        )
    shown = [
        _look_masks(prediction, bands, look, given, psf_fwhm=psf_fwhm, threshold=mask_threshold)
        for look, given in zip(looks, each, strict=True)
    ]
    probabilities = looks_probabilities(
        looks,
        bands,
        shown,
        psf_fwhm=psf_fwhm,
        star_fraction=star_fraction,
        neighbours=neighbours,
    )
    column = {name: probabilities[:, k] for k, name in enumerate(looks[0].classes)}
    p_star, p_galaxy = column["star"], column["galaxy"]
    labels = np.asarray(prediction["labels"])
    decided = looks[0].sees_whole(shown[0]) if only_whole else np.ones(len(labels), bool)
    is_star = p_star >= p_galaxy
    new_labels = np.where(is_star, star, np.where(labels == star, other, labels))
    source = np.asarray(prediction["p_star"], float) + np.asarray(prediction["p_galaxy"], float)
    scores = np.where(
        decided, source * np.maximum(p_star, p_galaxy), np.asarray(prediction["scores"], float)
    )
    ranking = np.asarray(prediction.get("detection_scores", prediction["scores"]), float)
    out = dict(prediction)
    out["labels"] = np.where(decided, new_labels, labels).astype(labels.dtype)
    out["scores"] = scores.astype(np.asarray(prediction["scores"]).dtype)
    out["detection_scores"] = np.where(decided, scores, ranking).astype(out["scores"].dtype)
    out["p_star_second_look"] = np.where(decided, p_star, np.nan)
    if "false" in column:
        out["p_false_second_look"] = np.where(decided, column["false"], np.nan)
    return out


def _look_masks(prediction, bands, look: SecondLook, masks, *, psf_fwhm: float, threshold: float):
    """The masks ``look`` is shown: ``masks`` when given, else the prediction's, drawn again
    by the look's mask refiner when it was trained on one."""
    if masks is not None:
        return masks
    drawn = prediction
    if look.mask_refiner is not None:  # the masks it learned on
        from skysift.mask_refine import refined_masks

        drawn = refined_masks(prediction, bands, look.mask_refiner, psf_fwhm=psf_fwhm)
    return np.asarray(drawn["masks"])[:, 0] >= threshold


def looks_probabilities(
    looks: Sequence[SecondLook],
    bands: np.ndarray,
    masks: Sequence,
    *,
    psf_fwhm: float,
    star_fraction: float | None = None,
    neighbours=(),
) -> np.ndarray:
    """The mean of several looks' ``(n, classes)`` probabilities of the same instances.

    Looks trained with other seeds, or on other masks, err on partly different instances,
    and their mean ranks better than either (docs/models.md, session 37).

    Parameters
    ----------
    looks : sequence of SecondLook
        One or more looks with the same :attr:`SecondLook.classes`.
    bands : numpy.ndarray
        ``(bands, height, width)`` normalized image.
    masks : sequence
        Per look, the instances' masks it is shown (see :func:`instance_cutouts`): each the
        masks it was trained on, of the same instances in the same order.
    psf_fwhm : float
        PSF FWHM of the detection band, pixels.
    star_fraction : float, optional
        Each look's probabilities are re-weighted to it from that look's own training mix
        (:meth:`SecondLook.probabilities`) before the mean.
    neighbours : sequence of (rows, cols)
        Other detections' masks, shown to the looks that have the neighbours' channel.

    Returns
    -------
    numpy.ndarray
        ``(n, classes)``, columns as the looks' classes.
    """
    from skysift.errors import InvalidParameterError

    if not looks or len(masks) != len(looks):
        raise InvalidParameterError(
            f"looks_probabilities needs one set of masks per look; got {len(looks)} looks "
            f"and {len(masks)} sets"
        )
    require_same_classes(looks)
    total = None
    for look, shown in zip(looks, masks, strict=True):
        p = look.probabilities(
            bands, shown, psf_fwhm=psf_fwhm, star_fraction=star_fraction, neighbours=neighbours
        )
        total = p if total is None else total + p
    return total / len(looks)


def require_same_classes(looks: Sequence[SecondLook]) -> None:
    """Raise :class:`~skysift.errors.InvalidParameterError` naming the first look whose
    classes differ from the first one's: only such looks' probabilities can be averaged."""
    from skysift.errors import InvalidParameterError

    first = looks[0]
    for look in looks[1:]:
        if look.classes != first.classes:
            raise InvalidParameterError(
                f"second look {look.card['name']!r} decides {look.classes}, "
                f"{first.card['name']!r} {first.classes}: only looks of the same classes "
                "can be averaged"
            )
