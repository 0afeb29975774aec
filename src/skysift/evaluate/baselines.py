"""Classical detectors behind the skysift detector interface: SEP and photutils.

A detector is any callable ``detector(image, *, mask=None) -> QTable`` returning a catalog in
the skysift schema (:mod:`skysift.catalog`), so the benchmark loops over skysift's networks and
these baselines alike. Images may be :class:`~skysift.image.Image` objects or 2-D arrays; for a
multi-band image the ``band`` option picks the band (default: the first).

Parameters used
---------------
``SepDetector`` runs SExtractor's algorithms through SEP: ``sep.Background`` (mesh ``back_size``,
median filter ``back_filter_size``), then ``sep.extract`` on the background-subtracted image
with the per-pixel background RMS as the error, the default 3x3 pyramidal filter,
``deblend_nthresh=32``, ``deblend_cont=0.005``, ``clean=True``. Presets:

* ``SepDetector.sextractor_defaults()``: DETECT_THRESH 1.5, DETECT_MINAREA 5, BACK_SIZE 64,
  BACK_FILTERSIZE 3 (SExtractor's defaults);
* ``SepDetector.asid_l_comparison()``: the ASID-L paper's settings, DETECT_MINAREA 3 and
  BACK_SIZE 60, otherwise defaults.

``SourceFinderDetector`` is photutils' segmentation route: ``Background2D`` (box 64, filter 3,
sigma-clipped median), convolution with a Gaussian of the PSF FWHM, ``SourceFinder`` (threshold
1.5 sigma, 5 connected pixels, deblending with 32 levels and contrast 0.001), ``SourceCatalog``
centroids and segment fluxes. ``DaoStarFinderDetector`` is ``DAOStarFinder`` (threshold 3 sigma
of the background RMS, the PSF FWHM) on the background-subtracted image.

Fluxes: SEP and photutils report their own fluxes (isophotal/segment sums, DAOFIND's peak-fit
flux); ``snr`` is ``flux / flux_err`` of a circular aperture of radius ``aperture_radius``
pixels measured with ``sep.sum_circle`` at each position, so every baseline's S/N is on one
scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from skysift.catalog import FLAGS, empty_catalog, make_catalog
from skysift.errors import EmptyCatalogWarning, SkysiftError
from skysift.image import Image, as_image

__all__ = [
    "DaoStarFinderDetector",
    "SepDetector",
    "SourceFinderDetector",
    "as_image",
    "default_fwhm_pixels",
]


def default_fwhm_pixels(image: Image, fallback: float = 3.0) -> float:
    """PSF FWHM in pixels from the header (SEEING or FWHM keyword and the pixel scale)."""
    header = image.header
    if header is not None and image.pixel_scale:
        for key in ("SEEING", "FWHM", "PSF_FWHM"):
            value = header.get(key)
            if isinstance(value, int | float) and value > 0:
                return float(value) / image.pixel_scale
    return fallback


def _band_pixels(image: Image, band: str | int | None) -> np.ndarray:
    # a writable copy: SEP's buffers refuse the read-only Image arrays
    data = np.array(image.band(0 if band is None else band), dtype=np.float32, order="C")
    data[image.mask] = 0.0  # SEP and photutils must not see NaN/inf even where masked
    return data


def _aperture_snr(data_sub, x, y, err, mask, radius):
    import sep

    if len(x) == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.int32)
    flux, flux_err, flag = sep.sum_circle(
        data_sub,
        np.asarray(x, float),
        np.asarray(y, float),
        radius,
        err=np.array(err, dtype=np.float32, order="C"),
        mask=np.array(mask, order="C"),
        subpix=5,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(flux_err > 0, flux / flux_err, np.nan)
    flags = np.zeros(len(x), dtype=np.int32)
    flags[(flag & sep.APER_TRUNC) != 0] |= FLAGS["edge"]
    flags[(flag & sep.APER_HASMASKED) != 0] |= FLAGS["masked"]
    return snr, flux_err, flags


def _finish(values: dict[str, Any], image: Image, name: str, config: dict):
    import warnings

    meta = {"detector": name, "config": config}
    if not len(values["x"]):
        warnings.warn(f"{name}: no sources detected", EmptyCatalogWarning, stacklevel=3)
        return empty_catalog(with_sky=image.wcs is not None, meta=meta)
    if image.wcs is not None:
        sky = image.wcs.pixel_to_world(values["x"], values["y"])
        values["ra"] = sky.ra.deg
        values["dec"] = sky.dec.deg
    return make_catalog(values, meta=meta)


@dataclass(frozen=True)
class SepDetector:
    """SExtractor's detection through SEP (see the module notes for every parameter).

    Parameters
    ----------
    threshold : float
        Detection threshold in units of the background RMS (DETECT_THRESH).
    min_area : int
        Minimum connected pixels above threshold (DETECT_MINAREA).
    back_size : int
        Background mesh size in pixels (BACK_SIZE).
    back_filter_size : int
        Median filter over background meshes (BACK_FILTERSIZE).
    deblend_nthresh, deblend_cont : int, float
        Deblending levels and minimum contrast.
    aperture_radius : float
        Radius (pixels) of the aperture giving ``snr``.
    band : str or int, optional
        Band of a multi-band image to run on.
    """

    threshold: float = 1.5
    min_area: int = 5
    back_size: int = 64
    back_filter_size: int = 3
    deblend_nthresh: int = 32
    deblend_cont: float = 0.005
    aperture_radius: float = 3.0
    band: str | int | None = None
    name: str = "sep"

    @classmethod
    def sextractor_defaults(cls, **overrides) -> SepDetector:
        """SExtractor's default detection settings."""
        return cls(name="sep-default", **overrides)

    @classmethod
    def asid_l_comparison(cls, **overrides) -> SepDetector:
        """The ASID-L paper's SExtractor settings: DETECT_MINAREA 3, BACK_SIZE 60."""
        return cls(min_area=3, back_size=60, name="sep-asid-l", **overrides)

    def __call__(self, image: Image | np.ndarray, *, mask=None):
        import sep

        image = as_image(image, mask)
        data = _band_pixels(image, self.band)
        bad = np.array(image.mask, order="C")
        try:
            background = sep.Background(
                data,
                mask=bad,
                bw=self.back_size,
                bh=self.back_size,
                fw=self.back_filter_size,
                fh=self.back_filter_size,
            )
            data_sub = data - background.back()
            rms = background.rms()
            sep.set_extract_pixstack(max(300_000, data.size // 2))
            sep.set_sub_object_limit(4096)
            objects = sep.extract(
                data_sub,
                self.threshold,
                err=rms,
                mask=bad,
                minarea=self.min_area,
                deblend_nthresh=self.deblend_nthresh,
                deblend_cont=self.deblend_cont,
                clean=True,
            )
        except Exception as exc:  # SEP raises bare Exception for its C status codes
            raise SkysiftError(f"{self.name}: SEP failed on the image ({exc})") from exc
        snr, _, aperture_flags = _aperture_snr(
            data_sub, objects["x"], objects["y"], rms, bad, self.aperture_radius
        )
        flags = aperture_flags.copy()
        flags[(objects["flag"] & sep.OBJ_MERGED) != 0] |= FLAGS["blended"]
        flags[(objects["flag"] & sep.OBJ_TRUNC) != 0] |= FLAGS["edge"]
        values = {
            "x": objects["x"],
            "y": objects["y"],
            "x_peak": objects["xpeak"],
            "y_peak": objects["ypeak"],
            "flux": objects["flux"],
            "snr": snr,
            "score": snr,
            "bbox_xmin": objects["xmin"],
            "bbox_xmax": objects["xmax"],
            "bbox_ymin": objects["ymin"],
            "bbox_ymax": objects["ymax"],
            "area": objects["npix"],
            "flags": flags,
            "a": objects["a"],
            "b": objects["b"],
            "theta": objects["theta"],
        }
        return _finish(values, image, self.name, self.__dict__.copy())


@dataclass(frozen=True)
class SourceFinderDetector:
    """photutils segmentation: ``Background2D`` + ``SourceFinder`` + ``SourceCatalog``.

    Parameters
    ----------
    threshold : float
        Detection threshold in units of the background RMS.
    n_pixels : int
        Minimum connected pixels.
    fwhm : float, optional
        PSF FWHM in pixels for the smoothing kernel; from the header when not given.
    box_size : int
        ``Background2D`` box size.
    deblend : bool
        Deblend overlapping sources.
    aperture_radius : float
        Radius (pixels) of the aperture giving ``snr``.
    band : str or int, optional
    """

    threshold: float = 1.5
    n_pixels: int = 5
    fwhm: float | None = None
    box_size: int = 64
    deblend: bool = True
    aperture_radius: float = 3.0
    band: str | int | None = None
    name: str = "photutils-segmentation"

    def __call__(self, image: Image | np.ndarray, *, mask=None):
        from astropy.convolution import convolve
        from photutils.background import Background2D, MedianBackground
        from photutils.segmentation import SourceCatalog, SourceFinder, make_2dgaussian_kernel

        image = as_image(image, mask)
        data = _band_pixels(image, self.band)
        fwhm = self.fwhm or default_fwhm_pixels(image)
        box = min(self.box_size, *data.shape)
        background = Background2D(
            data, box, filter_size=3, mask=image.mask, bkg_estimator=MedianBackground()
        )
        data_sub = data - background.background
        size = int(2 * math.ceil(2 * fwhm) + 1)
        kernel = make_2dgaussian_kernel(fwhm, size=size)
        convolved = convolve(data_sub, kernel, mask=image.mask, normalize_kernel=True)
        finder = SourceFinder(n_pixels=self.n_pixels, deblend=self.deblend, progress_bar=False)
        import warnings

        from photutils.utils.exceptions import NoDetectionsWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            segments = finder(
                convolved, self.threshold * background.background_rms, mask=image.mask
            )
        config = dict(self.__dict__.items()) | {"fwhm_used": fwhm}
        if segments is None:
            return _finish({"x": np.zeros(0), "y": np.zeros(0)}, image, self.name, config)
        catalog = SourceCatalog(data_sub, segments, convolved_data=convolved, mask=image.mask)
        x = np.asarray(catalog.x_centroid, dtype=float)
        y = np.asarray(catalog.y_centroid, dtype=float)
        finite = np.isfinite(x) & np.isfinite(y)
        rms = background.background_rms.astype(np.float32)
        snr, _, flags = _aperture_snr(
            data_sub, x[finite], y[finite], rms, image.mask, self.aperture_radius
        )
        boxes = catalog.bbox
        values = {
            "id": np.asarray(catalog.label)[finite],
            "x": x[finite],
            "y": y[finite],
            "flux": np.asarray(catalog.segment_flux, dtype=float)[finite],
            "snr": snr,
            "score": snr,
            "bbox_xmin": np.array([b.ixmin for b in boxes])[finite],
            "bbox_xmax": np.array([b.ixmax - 1 for b in boxes])[finite],
            "bbox_ymin": np.array([b.iymin for b in boxes])[finite],
            "bbox_ymax": np.array([b.iymax - 1 for b in boxes])[finite],
            "area": np.asarray(catalog.area.value, dtype=np.int64)[finite],
            "flags": flags,
        }
        return _finish(values, image, self.name, config)


@dataclass(frozen=True)
class DaoStarFinderDetector:
    """photutils ``DAOStarFinder`` on the background-subtracted image.

    Parameters
    ----------
    threshold : float
        Threshold in units of the background RMS.
    fwhm : float, optional
        PSF FWHM in pixels; from the header when not given.
    box_size : int
        ``Background2D`` box size.
    aperture_radius : float
        Radius (pixels) of the aperture giving ``snr``.
    band : str or int, optional
    """

    threshold: float = 3.0
    fwhm: float | None = None
    box_size: int = 64
    aperture_radius: float = 3.0
    band: str | int | None = None
    name: str = "photutils-daofind"

    def __call__(self, image: Image | np.ndarray, *, mask=None):
        import warnings

        from photutils.background import Background2D, MedianBackground
        from photutils.detection import DAOStarFinder
        from photutils.utils.exceptions import NoDetectionsWarning

        image = as_image(image, mask)
        data = _band_pixels(image, self.band)
        fwhm = self.fwhm or default_fwhm_pixels(image)
        box = min(self.box_size, *data.shape)
        background = Background2D(
            data, box, filter_size=3, mask=image.mask, bkg_estimator=MedianBackground()
        )
        data_sub = data - background.background
        rms = float(np.median(background.background_rms))
        finder = DAOStarFinder(threshold=self.threshold * rms, fwhm=fwhm)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NoDetectionsWarning)
            found = finder(data_sub, mask=image.mask)
        config = dict(self.__dict__) | {"fwhm_used": fwhm}
        if found is None:
            return _finish({"x": np.zeros(0), "y": np.zeros(0)}, image, self.name, config)
        x = np.asarray(found["x_centroid"], dtype=float)
        y = np.asarray(found["y_centroid"], dtype=float)
        snr, _, flags = _aperture_snr(
            data_sub,
            x,
            y,
            background.background_rms.astype(np.float32),
            image.mask,
            self.aperture_radius,
        )
        values = {
            "x": x,
            "y": y,
            "x_peak": np.rint(x).astype(np.int64),
            "y_peak": np.rint(y).astype(np.int64),
            "flux": np.asarray(found["flux"], dtype=float),
            "snr": snr,
            "score": snr,
            "flags": flags,
        }
        return _finish(values, image, self.name, config)
