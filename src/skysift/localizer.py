"""Localize sources: U-Net probability map, Laplacian-of-Gaussian peaks, sub-pixel positions.

(The module is ``localizer`` rather than DESIGN.md's ``localize`` so that the package-level
function ``skysift.localize`` is not shadowed by a submodule of the same name.)

The flow (AutoSourceID-Light, done better):

1. **Detection image.** One band is used as is; several bands are each normalized and averaged
   (then normalized again), a chi-like detection image.
2. **Normalization**, once for the whole image: ``asinh((x - median) / (softening * sigma))``
   with the median and MAD-sigma of the unmasked pixels, so every tile sees the same scaling.
   Masked pixels are set to 0 (the sky level).
3. **Probability map** from the U-Net on overlapping tiles, stitched without seams
   (:mod:`skysift.tiling`); masked pixels get probability 0.
4. **Peaks**: :func:`skimage.feature.blob_log` with one sigma matched to the 13-pixel training
   target, a threshold and an overlap (the ASID-L parameters, re-tuned on validation fields).
5. **Sub-pixel positions**: SExtractor's windowed centroid (as ``sep.winpos``, here compiled
   and parallel over sources: :mod:`skysift.source_measures`) on the
   background-subtracted image, kept when it stays within 1 px of the peak; otherwise the
   probability-weighted centroid of the 3x3 peak neighbourhood.
6. **Photometry**: circular aperture with a local background annulus (as ``sep.sum_circle``;
   :mod:`skysift.source_measures`), giving ``flux``, ``flux_err`` and ``snr``.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skysift.augmentation import AUGMENTATIONS, check_augment, from_view, to_view
from skysift.catalog import FLAGS, empty_catalog, make_catalog
from skysift.errors import EmptyCatalogWarning, InvalidParameterError
from skysift.image import Image
from skysift.normalization import normalize, robust_level_scale
from skysift.source_measures import (
    WINDOW_TRUNCATED,
    WINDOW_WANDERED,
    aperture_photometry,
    windowed_centroids,
)

__all__ = ["LocalizeConfig", "Localizer", "localize", "normalize"]

log = logging.getLogger(__name__)


#: LoG peaks are searched in blocks of this many pixels (bounded memory on large images) ...
PEAK_BLOCK = 4096
#: ... each with at least this much context on every side (8 sigma: the Laplacian's 4-sigma
#: kernel plus the 2.8-sigma reach of the overlap pruning).
PEAK_MARGIN = 24


@dataclass(frozen=True)
class LocalizeConfig:
    """Options of the localizer (defaults come from the model card when ``None``).

    Attributes
    ----------
    model : str
        Shipped model name.
    tile : int, optional
        Tile side in pixels (a multiple of the network's downsampling). ``None`` (default)
        chooses it per image: the side from 256 to 576 pixels with which the network computes
        the fewest pixels (:func:`skysift.tiling.choose_tile`; 544 for a 2560x2560 image,
        18 % less work than 256).
    margin : int
        Context trimmed from shared tile edges.
    batch_size : int
        Tiles per network call for 256-pixel tiles; larger tiles go in batches of as many
        pixels.
    log_sigma, threshold, overlap : float, optional
        LoG parameters (card values by default).
    aperture_radius : float, optional
        Photometry aperture radius in pixels; default 1.0 x the PSF FWHM estimated from the
        header (``SEEING``) or from the brightest detections.
    backend : str
        ``auto`` (ONNX Runtime when installed, else torch), ``onnx`` or ``torch``.
    band : str or int, optional
        Use only this band instead of the multi-band detection image.
    augment : str, optional
        Test-time augmentation: the probability map is the mean of the network's maps of the
        image flipped (``"flips"``: 4 maps) or flipped and rotated by 90 degrees (``"d4"``: all
        8 symmetries of the pixel grid), each mapped back. It removes much of the network's
        noise-driven scatter: on validation fields F1 rose 0.836 -> 0.865 (sparse), 0.743 ->
        0.758 (40/arcmin^2) and 0.649 -> 0.654 (crowded) with ``"d4"``, for 4 or 8 times the
        network's time (docs/models.md, session 9). ``None`` (default): one pass.
    """

    model: str = "localizer"
    tile: int | None = None
    margin: int = 16
    batch_size: int = 8
    log_sigma: float | None = None
    threshold: float | None = None
    overlap: float | None = None
    aperture_radius: float | None = None
    backend: str = "auto"
    band: str | int | None = None
    augment: str | None = None

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "onnx", "torch"):
            raise InvalidParameterError(
                f"backend must be auto, onnx or torch; got {self.backend!r}"
            )
        check_augment(self.augment)
        if self.tile is not None and self.tile <= 2 * self.margin:
            raise InvalidParameterError(
                f"tile ({self.tile}) must be larger than twice the margin ({self.margin})"
            )


@dataclass
class Localizer:
    """A loaded localizer: ``Localizer()(image) -> QTable``.

    Parameters
    ----------
    config : LocalizeConfig
    module : torch.nn.Module, optional
        Use this network instead of the shipped one (training, tests); ``card`` must then be
        given too. The shipped network runs from its cached ONNX graph
        (:func:`skysift.models.runtime.shipped_runner`), so ``module`` stays None then.
    card : dict, optional
    """

    config: LocalizeConfig = field(default_factory=LocalizeConfig)
    module: Any = None
    card: dict | None = None
    _runner: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        from skysift.models.registry import load_card

        if self.module is None:
            self.card = load_card(self.config.model)
        elif self.card is None:
            raise InvalidParameterError("a custom module needs its card (normalization, LoG)")
        multiple = self.downsampling
        if self.config.tile is not None and self.config.tile % multiple:
            raise InvalidParameterError(
                f"tile {self.config.tile} must be a multiple of {multiple} for this network"
            )
        from skysift.models.runtime import make_runner, shipped_runner

        if self.module is None:
            self._runner = shipped_runner(self.config.model, backend=self.config.backend)
        else:
            self._runner = make_runner(self.module, self.config.backend)

    @property
    def downsampling(self) -> int:
        """The network's total downsampling: tile sides must be multiples of it."""
        return 2 ** (len(self.card["architecture"]["config"]["widths"]) - 1)

    def tiling(self, shape: tuple[int, int]) -> tuple[int, int]:
        """``(tile side, tiles per network call)`` for an image of ``shape``."""
        from skysift.tiling import choose_tile

        if self.config.tile is not None:
            return self.config.tile, self.config.batch_size
        tile = choose_tile(shape, margin=self.config.margin, multiple=self.downsampling)
        return tile, max(1, self.config.batch_size * 256**2 // tile**2)

    @property
    def log_parameters(self) -> tuple[float, float, float]:
        peaks = self.card["peaks"]
        return (
            self.config.log_sigma or peaks["sigma"],
            self.config.threshold if self.config.threshold is not None else peaks["threshold"],
            self.config.overlap if self.config.overlap is not None else peaks["overlap"],
        )

    def detection_image(self, image: Image) -> np.ndarray:
        """The normalized single-band image the network sees (masked pixels 0)."""
        softening = self.card["normalization"]["softening"]
        bands = (
            list(range(image.n_bands))
            if self.config.band is None
            else [
                image.bands.index(self.config.band)
                if isinstance(self.config.band, str)
                else self.config.band
            ]
        )
        if len(bands) == 1:
            level, scale = robust_level_scale(image.data[bands[0]], image.mask)
            combined = normalize(image.data[bands[0]], level, scale, softening)
        else:
            # sum of per-band S/N images, scaled back to unit noise: a chi-like detection image
            linear = np.zeros(image.shape, dtype=np.float32)
            for b in bands:
                level, scale = robust_level_scale(image.data[b], image.mask)
                linear += (np.asarray(image.data[b], dtype=np.float32) - level) / scale
            level, scale = robust_level_scale(linear, image.mask)
            combined = normalize(linear, level, scale, softening)
        combined[image.mask] = 0.0
        combined[~np.isfinite(combined)] = 0.0
        return combined

    def probability_map(self, image: Image, *, progress: bool = False) -> np.ndarray:
        """Stitched U-Net probability map, ``(height, width)`` float32 in [0, 1]."""
        from skysift.tiling import predict_tiled

        normalized = self.detection_image(image)
        symmetries = AUGMENTATIONS[self.config.augment]
        probability = None
        for quarter_turns, flip in symmetries:
            view = np.ascontiguousarray(to_view(normalized, quarter_turns, flip))
            tile, batch_size = self.tiling(view.shape)
            seen = predict_tiled(
                view,
                self._runner,
                tile=tile,
                margin=self.config.margin,
                batch_size=batch_size,
                progress=progress,
            )
            back = from_view(seen, quarter_turns, flip)
            if probability is None:
                probability = np.ascontiguousarray(back)  # one pass: the map itself
            else:
                probability += back
        if len(symmetries) > 1:
            probability /= len(symmetries)
        probability[image.mask] = 0.0
        return probability

    def peaks(self, probability: np.ndarray, *, block: int = PEAK_BLOCK) -> np.ndarray:
        """Integer ``(row, col)`` of LoG peaks in a probability map.

        Large maps are searched in overlapping blocks of ``block`` pixels (each peak kept by
        the one block whose interior holds it, with enough context on every side for the
        Laplacian and the overlap pruning), which gives the same peaks as one
        :func:`skimage.feature.blob_log` call on the whole map while holding only a block's
        float64 work arrays instead of the map's.
        """
        from skysift.tiling import tile_grid

        if max(probability.shape) <= block:
            return self._block_peaks(probability)
        margin = max(PEAK_MARGIN, int(np.ceil(8 * self.log_parameters[0])))
        # equal blocks of at most ``block`` pixels (plus context), so that overlaps stay small
        longest = max(probability.shape)
        side = -(-longest // -(-longest // block)) + 2 * margin
        found = []
        for t in tile_grid(probability.shape, tile=side, margin=margin):
            peaks = self._block_peaks(probability[t.rows, t.cols])
            inside = (
                (peaks[:, 0] >= t.keep_rows.start)
                & (peaks[:, 0] < t.keep_rows.stop)
                & (peaks[:, 1] >= t.keep_cols.start)
                & (peaks[:, 1] < t.keep_cols.stop)
            )
            found.append(peaks[inside] + [t.rows.start, t.cols.start])
        return np.concatenate(found).astype(np.intp)

    def _block_peaks(self, probability: np.ndarray) -> np.ndarray:
        from skimage.feature import blob_log

        sigma, threshold, overlap = self.log_parameters
        blobs = blob_log(
            probability,
            min_sigma=sigma,
            max_sigma=sigma,
            num_sigma=1,
            threshold=threshold,
            overlap=overlap,
            exclude_border=False,
        )
        return blobs[:, :2].astype(np.intp).reshape(-1, 2)

    def __call__(self, image: Image | np.ndarray, *, mask=None, wcs=None, progress: bool = False):
        """Localize the sources of ``image``; returns a catalog (QTable, skysift schema)."""
        from skysift.image import as_image

        image = as_image(image, mask, wcs)
        probability = self.probability_map(image, progress=progress)
        return self.catalog(image, probability), probability

    def catalog(self, image: Image, probability: np.ndarray):
        """Peaks, sub-pixel positions and aperture photometry as a catalog."""
        meta = {
            "detector": "skysift-localizer",
            "model": self.card["name"],
            "log_parameters": list(self.log_parameters),
        }
        peaks = self.peaks(probability)
        if peaks.shape[0] == 0:
            warnings.warn("localizer: no sources detected", EmptyCatalogWarning, stacklevel=3)
            return empty_catalog(with_sky=image.wcs is not None, meta=meta)
        return _measure(image, probability, peaks, self.config, meta)


def overlapping_apertures(x: np.ndarray, y: np.ndarray, radius: float) -> np.ndarray:
    """For each source, whether a neighbour's aperture of ``radius`` overlaps its own (the
    centres closer than two radii): its aperture flux holds some of the neighbour's light,
    and the catalog flags it ``blended``."""
    from scipy.spatial import cKDTree

    close = np.zeros(len(x), dtype=bool)
    if len(x) > 1:
        pairs = cKDTree(np.column_stack([x, y])).query_pairs(2.0 * radius, output_type="ndarray")
        close[pairs.ravel()] = True
    return close


def _measure(
    image: Image, probability: np.ndarray, peaks: np.ndarray, config: LocalizeConfig, meta: dict
):
    import sep

    band = _photometry_band(image, config)
    data = np.array(image.data[band], dtype=np.float32, order="C")
    data[image.mask] = 0.0
    bad = np.array(image.mask, order="C")
    rows, cols = peaks[:, 0], peaks[:, 1]
    raw_peaks = np.asarray(image.data[band])[rows, cols]
    background = sep.Background(data, mask=bad, bw=64, bh=64)
    background.subfrom(data)  # in place: one image-sized array for centroids and photometry
    data_sub = data
    sigma = background.globalrms
    x0, y0 = cols.astype(float), rows.astype(float)
    fwhm = _fwhm_pixels(image, data_sub, x0, y0, probability[rows, cols])
    x, y = _refine(data_sub, probability, x0, y0, fwhm)
    radius = config.aperture_radius or max(1.5, 1.0 * fwhm)
    gain = image.header.get("GAIN") if image.header is not None else None
    # the annulus removes what the mesh background left locally (neighbours' wings, gradients)
    flux, flux_err, flags = aperture_photometry(
        data_sub,
        x,
        y,
        radius,
        annulus=(2.5 * radius, 3.5 * radius),
        noise=sigma,
        mask=bad,
        gain=gain if gain else None,
        subpix=5,
    )
    saturation = image.header.get("SATURATE") if image.header is not None else None
    if saturation:
        flags[raw_peaks >= 0.98 * float(saturation)] |= FLAGS["saturated"]
    flags[overlapping_apertures(x, y, radius)] |= FLAGS["blended"]
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(flux_err > 0, flux / flux_err, np.nan)
    values: dict[str, Any] = {
        "x": x,
        "y": y,
        "x_peak": cols,
        "y_peak": rows,
        "score": probability[rows, cols],
        "snr": snr,
        "flux": flux,
        "flux_err": flux_err,
        "flags": flags,
    }
    if image.wcs is not None:
        sky = image.wcs.pixel_to_world(x, y)
        values["ra"], values["dec"] = sky.ra.deg, sky.dec.deg
    order = np.lexsort((x, y))
    values = {k: np.asarray(v)[order] for k, v in values.items()}
    meta = {**meta, "aperture_radius": radius, "fwhm_estimate": fwhm}
    return make_catalog(values, meta=meta)


def _photometry_band(image: Image, config: LocalizeConfig) -> int:
    if config.band is not None:
        return image.bands.index(config.band) if isinstance(config.band, str) else config.band
    return 0 if image.n_bands == 1 else image.n_bands // 2


def _fwhm_pixels(image: Image, data_sub, x, y, score) -> float:
    """PSF FWHM in pixels: header SEEING / pixel scale, else from the brightest detections."""
    import sep

    if image.header_fwhm is not None:
        return image.header_fwhm
    chosen = np.argsort(-score)[: min(200, len(x))]
    radius, flag = sep.flux_radius(
        data_sub, x[chosen], y[chosen], np.full(chosen.size, 8.0), 0.5, subpix=5
    )
    good = (flag == 0) & np.isfinite(radius) & (radius > 0.3)
    if good.sum() < 5:
        return 3.0
    # the brightest sources are mostly point-like: half-light radius ~ FWHM / 2
    return float(np.clip(2.0 * np.percentile(radius[good], 25), 1.5, 20.0))


def _refine(data_sub, probability, x0, y0, fwhm) -> tuple[np.ndarray, np.ndarray]:
    """Windowed centroid on the image, falling back to the probability centroid."""
    # windows drifting 2 px away are stopped there: only those within 1 px are kept
    xw, yw, flag = windowed_centroids(data_sub, x0, y0, fwhm / 2.3548, max_shift=2.0)
    px, py = _probability_centroid(probability, x0.astype(np.intp), y0.astype(np.intp))
    # a window with no positive light leaves the peak as it is (as sep.winpos does)
    usable = (flag & (WINDOW_TRUNCATED | WINDOW_WANDERED)) == 0
    ok = usable & np.isfinite(xw) & np.isfinite(yw) & (np.hypot(xw - x0, yw - y0) < 1.0)
    return np.where(ok, xw, px), np.where(ok, yw, py)


def _probability_centroid(probability, cols, rows) -> tuple[np.ndarray, np.ndarray]:
    height, width = probability.shape
    total = np.zeros(cols.size)
    sx = np.zeros(cols.size)
    sy = np.zeros(cols.size)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            r = np.clip(rows + dy, 0, height - 1)
            c = np.clip(cols + dx, 0, width - 1)
            w = probability[r, c].astype(float)
            total += w
            sx += w * c
            sy += w * r
    total[total == 0] = 1.0
    return sx / total, sy / total


def localize(
    image: Image | np.ndarray,
    *,
    mask=None,
    wcs=None,
    config: LocalizeConfig | None = None,
    progress: bool = False,
):
    """Localize the sources of an image with the shipped U-Net + LoG localizer.

    Parameters
    ----------
    image : Image or numpy.ndarray
        The image (2-D array, ``(bands, h, w)`` cube, or :class:`Image`).
    mask : array_like of bool, optional
        Extra bad pixels (True = ignore).
    wcs : astropy.wcs.WCS, optional
        Adds ``ra``/``dec`` columns.
    config : LocalizeConfig, optional
    progress : bool
        Show a progress bar over tiles.

    Returns
    -------
    astropy.table.QTable
        ``id, x, y, x_peak, y_peak, score, snr, flux, flux_err, flags`` (+ ``ra, dec``) and the
        rest of the skysift schema with missing values.
    """
    catalog, _ = _cached_localizer(config or LocalizeConfig())(
        image, mask=mask, wcs=wcs, progress=progress
    )
    return catalog


_LOCALIZERS: dict[LocalizeConfig, Localizer] = {}


def _cached_localizer(config: LocalizeConfig) -> Localizer:
    if config not in _LOCALIZERS:
        _LOCALIZERS[config] = Localizer(config)
    return _LOCALIZERS[config]
