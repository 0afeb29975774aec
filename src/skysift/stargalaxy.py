"""Star/galaxy classification of localized sources (AutoSourceID-Classifier).

Every source gets a calibrated ``p_star``: a 32x32 cutout of the background-subtracted,
noise-normalized detection band around the source and the source's position on the detector go
through the dual-branch network (:mod:`skysift.models.stargalaxy`); its raw sigmoid output is
then calibrated with the logit-transformed Platt map stored in the model card
(:mod:`skysift.calibration`).

The position branch needs to know where a source sits relative to the optical axis. By default
the image is taken to be the whole detector with the optical axis at its centre; for a cutout
of a larger detector pass a :class:`DetectorGeometry` with the cutout's ``origin``.

>>> import skysift
>>> catalog = skysift.localize(image)              # doctest: +SKIP
>>> catalog = skysift.classify_stars(image, catalog)  # doctest: +SKIP
>>> galaxies = catalog[catalog["p_star"] < 0.5]    # doctest: +SKIP
"""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from skysift.errors import EmptyCatalogWarning, InvalidParameterError
from skysift.image import Image
from skysift.seeing import SEEING_CANDIDATES, SEEING_MIN_SOURCES, SkySubtractedBand

log = logging.getLogger(__name__)

__all__ = [
    "ClassifyConfig",
    "DetectorGeometry",
    "StarGalaxyClassifier",
    "classifier_inputs",
    "classify_stars",
    "pixel_scale_note",
    "seeing_from_cutouts",
]

#: Cutouts are cut this size and centre-cropped to the network's 32 x 32 (training shifts the
#: crop by up to 1 pixel as augmentation).
CUTOUT_MARGIN = 1
#: Sources classified per chunk (bounds the memory of cutouts on very large catalogs).
SOURCE_CHUNK = 16_384


def seeing_from_cutouts(cutouts: np.ndarray, *, softening: float) -> float:
    """The image's PSF FWHM in pixels, from its sources' normalized cutouts.

    :func:`skysift.seeing.fwhm_from_stamps` on the cutouts, decompressed. On simulated
    MeerLICHT fields (FWHM 3.6-6.4 px) this tracks the true PSF FWHM to 1.1 % (scatter; 2.5 %
    high on average).

    Parameters
    ----------
    cutouts : numpy.ndarray
        ``(n, s, s)`` cutouts as :func:`classifier_inputs` makes them (``asinh(x / (softening
        sigma))``, the source at index ``s // 2``).
    softening : float
        The softening the cutouts were compressed with.

    Returns
    -------
    float
        FWHM in pixels, or NaN when fewer than 5 sources are bright enough.
    """
    from skysift.seeing import fwhm_from_stamps

    return fwhm_from_stamps(softening * np.sinh(np.asarray(cutouts, np.float32)))


@dataclass(frozen=True)
class DetectorGeometry:
    """Where an image sits on its detector, for the classifier's position input.

    Parameters
    ----------
    optical_centre : (float, float)
        ``(x, y)`` of the optical axis in 0-based *detector* pixels.
    half_size : (float, float)
        Half the detector's ``(width, height)``: positions are scaled by it, so the corners of
        a detector centred on the axis map to (+-1, +-1).
    origin : (float, float)
        Detector pixel of the image's pixel (0, 0) (non-zero for a cutout of a larger frame).
    """

    optical_centre: tuple[float, float]
    half_size: tuple[float, float]
    origin: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if min(self.half_size) <= 0:
            raise InvalidParameterError(f"half_size must be positive; got {self.half_size}")

    @classmethod
    def whole_image(cls, shape: tuple[int, int]) -> DetectorGeometry:
        """The image is the whole detector, optical axis at its centre."""
        height, width = shape
        return cls(
            optical_centre=((width - 1) / 2, (height - 1) / 2), half_size=(width / 2, height / 2)
        )

    def normalized(self, x, y) -> np.ndarray:
        """``(n, 2)`` float32 network input for image positions ``x, y``."""
        from skysift.models.stargalaxy_inputs import normalized_position

        return normalized_position(
            np.asarray(x, float) + self.origin[0],
            np.asarray(y, float) + self.origin[1],
            optical_centre=self.optical_centre,
            half_size=self.half_size,
        )

    def radius(self, x, y) -> np.ndarray:
        """Distance from the optical axis in units of the detector half-diagonal."""
        p = self.normalized(x, y)
        return np.hypot(p[:, 0], p[:, 1]) / np.sqrt(2.0)


@dataclass(frozen=True)
class ClassifyConfig:
    """Options of the pipeline's ``classify`` stage.

    Attributes
    ----------
    model : str
        Shipped model name.
    calibrated : bool
        Report calibrated probabilities (the card's L-T Platt map) rather than raw scores.
    optical_centre : (float, float), optional
        ``(x, y)`` of the optical axis in detector pixels; the detector centre by default.
    detector_size : (int, int), optional
        Detector ``(width, height)`` in pixels; the image's own size by default.
    origin : (float, float)
        Detector pixel of the image's pixel (0, 0), for images cut from a larger frame.
    band : str or int, optional
        Band whose cutouts are classified (name or index); the middle band by default (the
        only band of a single-band image).
    """

    model: str = "stargalaxy"
    calibrated: bool = True
    optical_centre: tuple[float, float] | None = None
    detector_size: tuple[int, int] | None = None
    origin: tuple[float, float] = (0.0, 0.0)
    band: str | int | None = None

    def __post_init__(self) -> None:
        for name in ("optical_centre", "detector_size", "origin"):
            value = getattr(self, name)
            if value is not None:
                if len(value) != 2:
                    raise InvalidParameterError(f"classify.{name} needs two numbers; got {value}")
                object.__setattr__(self, name, tuple(float(v) for v in value))

    def geometry(self, shape: tuple[int, int]) -> DetectorGeometry:
        """The detector geometry for an image of ``shape`` (height, width)."""
        width, height = self.detector_size or (shape[1], shape[0])
        centre = self.optical_centre or ((width - 1) / 2, (height - 1) / 2)
        return DetectorGeometry(centre, (width / 2, height / 2), origin=self.origin)


def classifier_inputs(
    image: Image,
    x,
    y,
    *,
    softening: float,
    size: int = 32 + 2 * CUTOUT_MARGIN,
    band: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalized cutouts around ``(x, y)`` as the classifier sees them.

    The band is background-subtracted with a 64-pixel SEP mesh, divided by its robust noise and
    compressed with ``asinh(value / softening)``; masked and off-image pixels are 0.

    Returns
    -------
    cutouts : numpy.ndarray
        ``(n, size, size)`` float32.
    edge : numpy.ndarray
        Boolean per source: the cutout reached past the image edge (padded, flagged).
    """
    plane = _ClassifierPlane(image, band)
    return plane.cutouts(x, y, softening=softening, size=size)


class _ClassifierPlane(SkySubtractedBand):
    """The background-subtracted band cutouts are cut from (computed once per image)."""

    def cutouts(self, x, y, *, softening: float, size: int) -> tuple[np.ndarray, np.ndarray]:
        cutouts, edge = self.stamps(x, y, size=size)
        cutouts /= np.float32(softening)
        np.arcsinh(cutouts, out=cutouts)
        return cutouts, edge

    def seeing(self, x, y, *, softening: float, size: int) -> float:
        """:func:`seeing_from_cutouts` on the sources with the brightest central pixels."""
        # a generous pre-selection: the estimate itself keeps <= SEEING_CANDIDATES
        chosen = self.brightest(x, y, 2 * SEEING_CANDIDATES)
        cutouts, edge = self.cutouts(x[chosen], y[chosen], softening=softening, size=size)
        return seeing_from_cutouts(cutouts[~edge], softening=softening)


class StarGalaxyClassifier:
    """A loaded star/galaxy model: ``classifier(image, x, y) -> p_star``.

    Parameters
    ----------
    name : str
        Shipped model name (``"stargalaxy"``).
    module, card : optional
        An in-memory network and its card instead (training and tests).
    batch_size : int
        Sources per network call. 256 was the fastest here (ONNX Runtime, 2 cores: 20.3
        us/source against 25.3 at 1024) and keeps the runtime arena at ~0.1 GB (1024: ~0.3
        GB; 4096: 1.3 GB more peak memory): the first convolution's output is batch x 32 x
        30 x 30 floats.
    calibrated : bool
        Apply the card's calibration (True) or return the raw network output.
    backend : str
        ``"auto"`` (ONNX Runtime when installed: several times faster than eager PyTorch on
        this network), ``"onnx"`` or ``"torch"``.
    """

    def __init__(
        self,
        name: str = "stargalaxy",
        *,
        module=None,
        card: dict[str, Any] | None = None,
        batch_size: int = 256,
        calibrated: bool = True,
        backend: str = "auto",
    ) -> None:
        from skysift.models.stargalaxy_inputs import StarGalaxyConfig

        if module is None:
            from skysift.models.registry import load_card

            card = load_card(name)  # the network runs from its cached ONNX graph
        elif card is None:
            raise InvalidParameterError("a module needs its card")
        else:
            module.eval()
        self.name = name
        self.module, self.card = module, card
        #: The network's architecture (inputs, context layout).
        self.config = (
            StarGalaxyConfig.from_dict(card["architecture"]["config"])
            if module is None
            else module.config
        )
        self.batch_size = batch_size
        self.calibrated = calibrated
        self.backend = backend
        self._runner = None
        #: Seeing FWHM (pixels) measured on the last image, for a model with a seeing input.
        self.seeing_fwhm: float | None = None

    @staticmethod
    def plane(image: Image, band: str | int | None = None):
        """The background-subtracted band of ``image`` the cutouts are cut from."""
        return _ClassifierPlane(image, image.band_index(band))

    @property
    def calibration(self):
        from skysift.calibration import PlattCalibration

        data = self.card.get("calibration")
        return PlattCalibration.from_dict(data) if data else None

    def raw_scores(self, cutouts: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Uncalibrated sigmoid outputs for ``(n, 32, 32)`` cutouts and ``(n, C)`` contexts
        (normalized positions, plus the seeing input for a model with ``seeing_input``)."""
        config = self.config
        if positions.ndim != 2 or positions.shape[1] != config.context_size:
            raise InvalidParameterError(
                f"this model takes {config.context_size} context columns per source; "
                f"got an array of shape {positions.shape}"
            )
        if self._runner is None:
            self._runner = self._make_runner()
        n = cutouts.shape[0]
        out = np.empty(n, dtype=np.float32)
        for start in range(0, n, self.batch_size):
            stop = min(start + self.batch_size, n)
            out[start:stop] = self._runner(
                image=np.ascontiguousarray(cutouts[start:stop, None], dtype=np.float32),
                position=np.ascontiguousarray(positions[start:stop], dtype=np.float32),
            ).reshape(-1)
        return out

    def _make_runner(self):
        from skysift.models.runtime import make_multi_input_runner, shipped_runner

        shapes = {
            "image": (2, 1, self.config.cutout, self.config.cutout),
            "position": (2, self.config.context_size),
        }
        if self.module is None:
            return shipped_runner(self.name, shapes, self.backend)
        import torch

        examples = {key: torch.zeros(shape) for key, shape in shapes.items()}
        return make_multi_input_runner(self.module, examples, self.backend)

    def __call__(
        self,
        image: Image,
        x,
        y,
        *,
        geometry: DetectorGeometry | None = None,
        band: str | int | None = None,
        seeing_fwhm: float | None = None,
        plane=None,
        progress: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(p_star, edge)`` for the sources at ``x, y`` of ``image``; a model with a
        seeing input takes ``seeing_fwhm`` (pixels) when given, else measures it on the
        sources' cutouts. ``plane``, from :meth:`plane`, saves computing the band's
        background again when the same image is classified in parts."""
        from skysift.progress import progress_iter

        x = np.asarray(x, float)
        y = np.asarray(y, float)
        if x.size == 0:
            return np.empty(0, np.float32), np.empty(0, bool)
        geometry = geometry or DetectorGeometry.whole_image(image.shape)
        softening = self.card["normalization"]["softening"]
        plane = plane if plane is not None else self.plane(image, band)
        m, size = CUTOUT_MARGIN, 32 + 2 * CUTOUT_MARGIN
        config = self.config
        if config.seeing_input and seeing_fwhm is not None:
            self.seeing_fwhm = float(seeing_fwhm)
        elif config.seeing_input:
            self.seeing_fwhm = plane.seeing(x, y, softening=softening, size=size)
            if not np.isfinite(self.seeing_fwhm):
                log.warning(
                    "classify: fewer than %d sources bright enough to measure the seeing; "
                    "using the model's reference FWHM %.2f px",
                    SEEING_MIN_SOURCES,
                    config.seeing_reference,
                )
        positions = config.context(geometry.normalized(x, y), self.seeing_fwhm)
        scores = np.empty(x.size, np.float32)
        edge = np.empty(x.size, bool)
        # sources in chunks: memory stays at a chunk of cutouts however many sources there are
        chunks = range(0, x.size, SOURCE_CHUNK)
        for start in progress_iter(chunks, "classifying sources", enabled=progress):
            part = slice(start, start + SOURCE_CHUNK)
            cutouts, edge[part] = plane.cutouts(x[part], y[part], softening=softening, size=size)
            scores[part] = self.raw_scores(cutouts[:, m:-m, m:-m], positions[part])
        calibration = self.calibration
        if self.calibrated and calibration is not None:
            scores = calibration(scores).astype(np.float32)
        return scores, edge


@functools.cache
def _shipped_classifier() -> StarGalaxyClassifier:
    return StarGalaxyClassifier()


#: How far (as a factor either way) an image's pixel scale may be from the training fields'
#: before the classifier warns that ``p_star`` is outside what it learned.
PIXEL_SCALE_TOLERANCE = 1.25


def pixel_scale_note(card: dict, pixel_scale: float | None) -> str | None:
    """Why ``p_star`` is outside what the classifier learned on an image of ``pixel_scale``
    (arcsec/pixel), or None: within :data:`PIXEL_SCALE_TOLERANCE` of its training survey's
    scale (the card's ``trained_on.preset``), or either scale unknown.

    The network sees 32x32-pixel cutouts: on another pixel scale the same sources span other
    numbers of pixels than it learned (docs/usage.md measures it on DECaLS-like fields)."""
    from skysift.sim.presets import PRESETS

    preset = card.get("trained_on", {}).get("preset")
    if pixel_scale is None or preset not in PRESETS:
        return None
    trained = PRESETS[preset].pixel_scale
    if 1 / PIXEL_SCALE_TOLERANCE <= pixel_scale / trained <= PIXEL_SCALE_TOLERANCE:
        return None
    return (
        f"the {card.get('name', '')!r} star/galaxy classifier learned {preset} fields of "
        f'{trained:g}"/px and this image has {pixel_scale:.3g}"/px; read its p_star as '
        "indicative (on g, r, z images at DECaLS's or SDSS's scale the segment stage's "
        "morphology is the better star/galaxy call)"
    )


def classify_stars(
    image,
    catalog=None,
    *,
    mask=None,
    wcs=None,
    geometry: DetectorGeometry | None = None,
    band: str | int | None = None,
    classifier: StarGalaxyClassifier | None = None,
    progress: bool = False,
):
    """Add a calibrated ``p_star`` column to a catalog of ``image``'s sources.

    Parameters
    ----------
    image : Image, numpy.ndarray or path
        The image the catalog was measured on.
    catalog : astropy.table.QTable, optional
        Sources with ``x`` and ``y``; localized with :func:`skysift.localize` when omitted.
    mask, wcs : optional
        As for :func:`skysift.localize`.
    geometry : DetectorGeometry, optional
        Where the image sits on its detector (default: the whole detector, axis at the centre).
    band : str or int, optional
        Band to classify on (default: the middle band).
    classifier : StarGalaxyClassifier, optional
        A loaded model (default: the shipped ``stargalaxy``).
    progress : bool
        Show a progress bar over batches of sources.

    Returns
    -------
    astropy.table.QTable
        A copy of the catalog with ``p_star`` filled (the input is not modified); sources whose
        cutout reached the image edge get the ``edge`` flag; ``meta["stargalaxy_model"]``
        names the model. For a model with a seeing input, ``meta["seeing_fwhm_pixels"]`` holds
        the seeing it measured on the image. An image whose pixel scale is far from the
        model's training fields' is classified with a warning, repeated in
        ``meta["stargalaxy_out_of_domain"]`` (:func:`pixel_scale_note`).
    """
    from skysift.catalog import FLAGS
    from skysift.image import as_image

    if isinstance(image, str) or hasattr(image, "__fspath__"):
        from skysift.io import read_image

        image = read_image(image)
    image = as_image(image, mask, wcs)
    if catalog is None:
        from skysift.localizer import localize

        catalog = localize(image)
    catalog = catalog.copy()
    for column in ("x", "y"):
        if column not in catalog.colnames:
            raise InvalidParameterError(f"the catalog has no {column!r} column")
    if len(catalog) == 0:
        warnings.warn("classify_stars: empty catalog", EmptyCatalogWarning, stacklevel=2)
        catalog["p_star"] = np.zeros(0, np.float32)
        return catalog
    classifier = classifier or _shipped_classifier()
    x = np.asarray(getattr(catalog["x"], "value", catalog["x"]), float)
    y = np.asarray(getattr(catalog["y"], "value", catalog["y"]), float)
    p_star, edge = classifier(image, x, y, geometry=geometry, band=band, progress=progress)
    catalog["p_star"] = p_star
    catalog.meta["stargalaxy_model"] = classifier.card.get("name", "")
    note = pixel_scale_note(classifier.card, image.pixel_scale)
    if note is not None:
        log.warning("classify: %s", note)
        catalog.meta["stargalaxy_out_of_domain"] = note
    if classifier.seeing_fwhm is not None and np.isfinite(classifier.seeing_fwhm):
        catalog.meta["seeing_fwhm_pixels"] = classifier.seeing_fwhm
    if "flags" in catalog.colnames:
        catalog["flags"] = np.asarray(catalog["flags"]) | np.where(edge, FLAGS["edge"], 0)
    return catalog
