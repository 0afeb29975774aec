"""P(shred): is a catalogued galaxy a star-forming clump of a larger galaxy?

A detector that finds sources by their peaks catalogues the bright star-forming clumps of a
nearby disk galaxy as sources of their own: *shreds*. The Galaxy Shreds paper (Di Teodoro
et al.) found 4-5 % of catalogued galaxies to be shreds after the usual selection cuts and
trained a CNN on 128x128 g, r, z cutouts to tell them from genuine galaxies (AUC 0.985).
What gives a shred away is its surroundings: a compact, blue knot on the disk of a larger
galaxy. The segmenter's detections of such clumps are its largest kind of false galaxy
above Burke et al.'s 80 % recall rank (docs/models.md, sessions 22-23).

skysift's network sees each source twice, at the same centre (:func:`shred_inputs`): a
32x32 cutout at the image's own pixel scale (the knot resolved) and a 128x128 window
averaged over 4x4 blocks (the galaxy around it, 33 arcsec across at DECaLS's 0.262"/px,
the paper's field of view). Both views carry every band, normalized as the segmenter's
input (:func:`skysift.segment.network_input`), so the two share one normalization and the
segmenter's bands can be passed on as they are. The network is ASID-C's dual-branch CNN
(:class:`skysift.models.stargalaxy.StarGalaxyNet`) on the stacked views, its context branch
given the PSF FWHM; it is far smaller than the paper's VGG-like 10.6M-parameter network,
which this CPU could not train from scratch in the time a model may take here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skysift.models.stargalaxy_inputs import ShippedStarGalaxyNetwork

__all__ = [
    "CONTEXT_ZOOM",
    "CUTOUT",
    "ShredClassifier",
    "ShredsConfig",
    "find_shreds",
    "image_psf_fwhm",
    "shred_inputs",
    "unshred",
]

#: Side of each view (pixels of the network input).
CUTOUT = 32
#: The context view covers ``CUTOUT * CONTEXT_ZOOM`` image pixels, averaged over
#: ``CONTEXT_ZOOM x CONTEXT_ZOOM`` blocks.
CONTEXT_ZOOM = 4


def shred_inputs(bands: np.ndarray, x, y) -> np.ndarray:
    """The shred network's two views of each source.

    Parameters
    ----------
    bands : numpy.ndarray
        ``(bands, height, width)`` normalized image (:func:`skysift.segment.network_input`).
        Not modified.
    x, y : array_like
        0-based source positions (x = column, y = row).

    Returns
    -------
    numpy.ndarray
        ``(n, 2 * bands, 32, 32)`` float32: the native 32x32 cutout of every band, then the
        128x128 window of every band averaged over 4x4 blocks, both centred on the source's
        pixel (:func:`skysift.cutouts.extract_cutouts`; zero beyond the image).
    """
    from scipy.ndimage import uniform_filter

    from skysift.cutouts import extract_cutouts
    from skysift.errors import InvalidParameterError

    bands = np.asarray(bands, dtype=np.float32)
    if bands.ndim != 3:
        raise InvalidParameterError(
            f"the shred classifier needs (bands, height, width) images; got shape {bands.shape}"
        )
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    n_bands = bands.shape[0]
    wide = CUTOUT * CONTEXT_ZOOM
    out = np.zeros((x.size, 2 * n_bands, CUTOUT, CUTOUT), dtype=np.float32)
    if not x.size:
        return out
    # Each context pixel is the mean of a 4x4 block of the window (zero beyond the image).
    # A 4x4 running mean of the zero-padded band holds every block's mean at once; a block
    # whose first pixel is p sits at p + 2 in it (the filter's window of an even size).
    steps = CONTEXT_ZOOM * np.arange(CUTOUT) + CONTEXT_ZOOM // 2 + wide
    rows = (np.rint(y).astype(np.int64) - wide // 2)[:, None] + steps
    cols = (np.rint(x).astype(np.int64) - wide // 2)[:, None] + steps
    rows = np.clip(rows, 0, bands.shape[1] + 2 * wide - 1)
    cols = np.clip(cols, 0, bands.shape[2] + 2 * wide - 1)
    for b, plane in enumerate(bands):
        out[:, b] = extract_cutouts(plane, x, y, size=CUTOUT)[0]
        means = uniform_filter(np.pad(plane, wide), size=CONTEXT_ZOOM, mode="constant")
        out[:, n_bands + b] = means[rows[:, :, None], cols[:, None, :]]
    return out
    for b, plane in enumerate(bands):
        out[:, b] = extract_cutouts(plane, x, y, size=CUTOUT)[0]
        context = extract_cutouts(plane, x, y, size=wide)[0]
        out[:, n_bands + b] = context.reshape(-1, CUTOUT, CONTEXT_ZOOM, CUTOUT, CONTEXT_ZOOM).mean(
            axis=(2, 4)
        )
    return out


@dataclass(frozen=True)
class ShredsConfig:
    """Options of the pipeline's ``shreds`` stage.

    Attributes
    ----------
    model : str
        Shipped shred classifier.
    psf_fwhm : float or None
        Detection-band PSF FWHM in pixels; None takes the header's ``SEEING`` over the pixel
        scale, else measures it on the image's stars.
    """

    model: str = "shred"
    psf_fwhm: float | None = None

    def __post_init__(self) -> None:
        from skysift.errors import InvalidParameterError

        if self.psf_fwhm is not None and not (math.isfinite(self.psf_fwhm) and self.psf_fwhm > 0):
            raise InvalidParameterError(
                f"shreds.psf_fwhm must be a positive number of pixels, got {self.psf_fwhm}"
            )


class ShredClassifier(ShippedStarGalaxyNetwork):
    """A shipped shred network (``"shred"`` by default), ready to give P(shred) at source
    positions; ``module`` and ``card`` as for :class:`ShippedStarGalaxyNetwork`."""

    what = "shred module"

    def __init__(self, name: str = "shred", *, module=None, card=None) -> None:
        from skysift.errors import InvalidParameterError

        super().__init__(name, module=module, card=card)
        card = self.card
        if (
            self.config.position_input
            or not self.config.seeing_input
            or self.config.outputs != 1
            or self.config.in_channels % 2
        ):
            raise InvalidParameterError(
                f"model {card['name']!r} is not a shred classifier: it must take two views of "
                "each band and the seeing, no field position, and give one output"
            )

    @property
    def bands(self) -> int:
        """Image bands the network takes (half its channels: two views of each)."""
        return self.config.in_channels // 2

    @property
    def softening(self) -> float:
        """Softening of the input normalization (:func:`skysift.normalization.normalize`)."""
        return float(self.card["normalization"]["softening"])

    def probabilities(self, bands: np.ndarray, x, y, *, psf_fwhm) -> np.ndarray:
        """``(n,)`` P(shred) of the sources at ``(x, y)``.

        Parameters
        ----------
        bands : numpy.ndarray
            ``(bands, height, width)`` normalized image (:func:`shred_inputs`).
        x, y : array_like
            0-based source positions.
        psf_fwhm : float or array_like
            PSF FWHM of the detection band in pixels, one value or one per source.
        """
        from skysift.errors import InvalidParameterError
        from skysift.second_look import predict_probabilities

        if np.ndim(bands) != 3 or np.shape(bands)[0] != self.bands:
            raise InvalidParameterError(
                f"the {self.card['name']!r} shred classifier takes {self.bands} normalized "
                f"bands as (bands, height, width); got shape {np.shape(bands)}"
            )
        cutouts = shred_inputs(bands, x, y)
        if not len(cutouts):
            return np.zeros(0)
        context = self.config.context(np.zeros((len(cutouts), 2)), seeing_fwhm=psf_fwhm)
        return predict_probabilities(self.module, cutouts, context)[:, 1]

    def __call__(self, image, x, y, *, psf_fwhm=None) -> np.ndarray:
        """``(n,)`` P(shred) of the sources at ``(x, y)`` of ``image``.

        Parameters
        ----------
        image : Image or numpy.ndarray
            The image (its bands as the model was trained on, e.g. g, r, z).
        x, y : array_like
            0-based source positions.
        psf_fwhm : float, optional
            Detection-band PSF FWHM in pixels; None takes the header's ``SEEING`` over the
            pixel scale, else measures it on the image's stars
            (:func:`skysift.seeing.measure_psf_fwhm`).
        """
        from skysift.errors import InvalidParameterError
        from skysift.image import as_image
        from skysift.segment import network_input

        image = as_image(image)
        if image.n_bands != self.bands:
            raise InvalidParameterError(
                f"the {self.card['name']!r} shred classifier takes {self.bands} bands; the "
                f"image has {image.n_bands} ({', '.join(image.bands)})"
            )
        if psf_fwhm is None:
            psf_fwhm = image_psf_fwhm(image)
        bands = network_input(image, channels=self.bands, softening=self.softening)
        return self.probabilities(bands, x, y, psf_fwhm=psf_fwhm)


def mask_centre_p_shred(
    bands: np.ndarray, pixels, classifier: ShredClassifier, *, psf_fwhm: float
) -> np.ndarray:
    """P(shred) of each instance taken at the centre of its ``(rows, cols)`` pixels (none
    empty) in the normalized ``bands``."""
    y = np.array([np.mean(rows) for rows, _ in pixels])
    x = np.array([np.mean(cols) for _, cols in pixels])
    return classifier.probabilities(bands, x, y, psf_fwhm=psf_fwhm)


def unshred(
    prediction: dict[str, np.ndarray],
    bands: np.ndarray,
    classifier: ShredClassifier,
    *,
    psf_fwhm: float,
    classes,
    masks=None,
    mask_threshold: float = 0.5,
) -> dict[str, np.ndarray]:
    """A segmenter's prediction with each galaxy's score times 1 - P(shred).

    Parameters
    ----------
    prediction : dict
        ``labels (n,)`` (1-based into ``classes``), ``scores`` and, unless ``masks`` is given,
        ``masks (n, 1, H, W)`` probabilities; ``detection_scores`` when a second look has
        set them. Any other per-instance arrays are kept.
    bands : numpy.ndarray
        ``(bands, H, W)`` normalized image the masks refer to.
    classifier : ShredClassifier
    psf_fwhm : float
        PSF FWHM of the detection band, pixels.
    classes : sequence of str
        The detector's classes (a label that is not ``star`` is a galaxy).
    masks : sequence of (rows, cols) or numpy.ndarray, optional
        The instances' pixels in ``bands``, when the prediction's ``masks`` are not
        whole-image probabilities.
    mask_threshold : float
        Mask probability above which a pixel belongs to the instance.

    Returns
    -------
    dict
        A new prediction: each galaxy's ``scores`` and ``detection_scores`` times 1 -
        P(shred), P(shred) taken at the centre of its mask's area; ``p_shred`` (NaN for
        stars and empty masks). The input is not modified.
    """
    from skysift.second_look import _pixels

    if masks is None:
        masks = np.asarray(prediction["masks"])[:, 0] >= mask_threshold
    pixels = _pixels(masks)
    labels = np.asarray(prediction["labels"])
    star = list(classes).index("star") + 1 if "star" in classes else -1
    galaxy = np.array(
        [lab != star and len(rows) > 0 for lab, (rows, _) in zip(labels, pixels, strict=True)],
        dtype=bool,
    )
    p_shred = np.full(labels.size, np.nan)
    if galaxy.any():
        chosen = [pixels[i] for i in np.flatnonzero(galaxy)]
        p_shred[galaxy] = mask_centre_p_shred(bands, chosen, classifier, psf_fwhm=psf_fwhm)
    keep = np.where(galaxy, 1.0 - np.nan_to_num(p_shred), 1.0)
    scores = np.asarray(prediction["scores"])
    ranking = np.asarray(prediction.get("detection_scores", scores), float)
    out = dict(prediction)
    out["scores"] = (scores * keep).astype(scores.dtype)
    out["detection_scores"] = (ranking * keep).astype(scores.dtype)
    out["p_shred"] = p_shred
    return out


def image_psf_fwhm(image) -> float:
    """The detection band's PSF FWHM in pixels: the header's ``SEEING`` over the pixel
    scale, else measured on the image's bright point sources.

    Raises
    ------
    InvalidParameterError
        Neither is available.
    """
    from skysift.errors import InvalidParameterError
    from skysift.seeing import measure_psf_fwhm

    if image.header_fwhm is not None:
        return float(image.header_fwhm)
    measured = float(measure_psf_fwhm(image))
    if not np.isfinite(measured):
        raise InvalidParameterError(
            "the shred classifier takes the PSF FWHM, and the image has no SEEING in its "
            "header and too few bright point sources to measure it: pass psf_fwhm (pixels)"
        )
    return measured


def find_shreds(image, catalog, *, classifier: ShredClassifier | None = None, psf_fwhm=None):
    """Add ``p_shred`` to a catalog of ``image``'s sources.

    Parameters
    ----------
    image : Image or numpy.ndarray
        The image the catalog was measured on, in the bands the classifier takes.
    catalog : astropy.table.QTable
        Sources with ``x`` and ``y`` (skysift schema).
    classifier : ShredClassifier, optional
        A loaded model (default: the shipped ``shred``).
    psf_fwhm : float, optional
        Detection-band PSF FWHM in pixels (see :meth:`ShredClassifier.__call__`).

    Returns
    -------
    astropy.table.QTable
        A copy of the catalog with ``p_shred`` filled for every source (the input is not
        modified); ``meta["shred_model"]`` names the model.
    """
    from skysift.errors import InvalidParameterError

    for column in ("x", "y"):
        if column not in catalog.colnames:
            raise InvalidParameterError(f"the catalog has no {column!r} column")
    out = catalog.copy()
    classifier = classifier or ShredClassifier()
    if len(out):
        x = np.asarray(getattr(out["x"], "value", out["x"]), float)
        y = np.asarray(getattr(out["y"], "value", out["y"]), float)
        out["p_shred"] = classifier(image, x, y, psf_fwhm=psf_fwhm).astype(np.float32)
    out.meta["shred_model"] = classifier.card["name"]
    return out
