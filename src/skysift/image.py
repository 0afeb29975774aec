"""The :class:`Image` every skysift stage takes: bands of float32 pixels, a mask, and a WCS."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from skysift.errors import ImageShapeError, InvalidParameterError, MaskedImageError

if TYPE_CHECKING:
    from astropy.io.fits import Header
    from astropy.wcs import WCS

__all__ = ["MIN_IMAGE_SIZE", "Image", "as_image"]

#: Smallest image side (pixels) skysift accepts: one classifier cutout (32 px) must fit.
MIN_IMAGE_SIZE = 32


def _readonly(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def seeing_arcsec(value: Any) -> float | None:
    """A header's ``SEEING`` as a positive number, or None (missing, not a number, <= 0)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number > 0 else None


#: Header keywords read, in this order, as the AB magnitude of one image unit.
ZERO_POINT_KEYWORDS = ("MAGZP", "MAGZERO")


def header_zero_point(header: Any) -> float | None:
    """A header's zero point (:data:`ZERO_POINT_KEYWORDS`: the AB magnitude of one image
    unit) as a finite number, or None."""
    for keyword in ZERO_POINT_KEYWORDS:
        try:
            value = float(header.get(keyword)) if header is not None else math.nan
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            return value
    return None


@dataclass(frozen=True, eq=False)
class Image:
    """An astronomical image with one or more bands on the same pixel grid.

    Instances are immutable: ``data`` and ``mask`` are read-only views, so no stage can change
    the pixels another stage sees. Build one with :func:`skysift.read_image` from FITS files or
    with :meth:`Image.from_array` from numpy arrays.

    Attributes
    ----------
    data : numpy.ndarray
        Pixels, shape ``(n_bands, height, width)``, float32 in native byte order. Masked pixels
        keep their original (possibly non-finite) values; use ``mask`` to know which they are.
    mask : numpy.ndarray
        Boolean, shape ``(height, width)``; True marks a pixel to ignore in every band.
    wcs : astropy.wcs.WCS or None
        Celestial WCS of the pixel grid, or None when the header has no usable one.
    bands : tuple of str
        One unique name per band, in the order of ``data``.
    pixel_scale : float or None
        Arcseconds per pixel (from the WCS or a PIXSCALE-like keyword), or None if unknown.
    header : astropy.io.fits.Header or None
        Header of the (first) image HDU.
    path : str or None
        Where the (first) band was read from.
    """

    data: np.ndarray
    mask: np.ndarray
    wcs: WCS | None = None
    bands: tuple[str, ...] = ()
    pixel_scale: float | None = None
    header: Header | None = None
    path: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim != 3:
            raise ImageShapeError(
                f"Image.data must have shape (bands, height, width); got {data.ndim}-D "
                f"shape {data.shape}"
            )
        if data.dtype != np.float32 or not data.dtype.isnative:
            raise ImageShapeError(
                f"Image.data must be float32 in native byte order; got {data.dtype.str}"
            )
        mask = np.asarray(self.mask)
        if mask.dtype != bool or mask.shape != data.shape[1:]:
            raise ImageShapeError(
                f"Image.mask must be boolean with shape {data.shape[1:]}; "
                f"got {mask.dtype} with shape {mask.shape}"
            )
        bands = tuple(self.bands) or tuple(f"band{i}" for i in range(data.shape[0]))
        if len(bands) != data.shape[0]:
            raise InvalidParameterError(
                f"bands: {len(bands)} names {bands} given for {data.shape[0]} image band(s)"
            )
        if len(set(bands)) != len(bands):
            raise InvalidParameterError(f"bands: names must be unique; got {bands}")
        if self.pixel_scale is not None and not (
            np.isfinite(self.pixel_scale) and self.pixel_scale > 0
        ):
            raise InvalidParameterError(
                f"pixel_scale must be a positive number of arcsec/pixel; got {self.pixel_scale}"
            )
        object.__setattr__(self, "data", _readonly(data))
        object.__setattr__(self, "mask", _readonly(mask))
        object.__setattr__(self, "bands", bands)

    @classmethod
    def from_array(
        cls,
        data: Any,
        *,
        mask: Any = None,
        wcs: WCS | None = None,
        bands: tuple[str, ...] | list[str] | None = None,
        pixel_scale: float | None = None,
        header: Header | None = None,
        min_size: int = MIN_IMAGE_SIZE,
        name: str = "data",
        copy: bool = True,
    ) -> Image:
        """Build an :class:`Image` from an array, validating it like :func:`read_image` does.

        Parameters
        ----------
        data : array_like
            A 2-D image ``(height, width)`` or a 3-D cube ``(bands, height, width)``. Integer and
            boolean arrays are converted to float32; the input is never modified.
        mask : array_like of bool, optional
            ``(height, width)``; True marks bad pixels. Non-finite pixels are always masked.
        wcs : astropy.wcs.WCS, optional
            Celestial WCS of the pixel grid.
        bands : sequence of str, optional
            Band names; default ``band0, band1, ...``.
        pixel_scale : float, optional
            Arcsec per pixel. Taken from ``wcs`` when not given.
        header : astropy.io.fits.Header, optional
            Header to carry along.
        min_size : int
            Smallest accepted height and width in pixels.
        name : str
            How to call the input in error messages (a file name, for example).
        copy : bool
            Copy the pixels (default). ``False`` lets a caller that owns a float32 array hand it
            over without a second copy in memory; it must not touch the array afterwards.

        Returns
        -------
        Image
        """
        array = np.asarray(data)
        if array.ndim == 2:
            array = array[np.newaxis]
        if array.ndim != 3:
            raise ImageShapeError(
                f"{name}: image data is {array.ndim}-D with shape {array.shape}; expected a "
                "2-D image (height, width) or a 3-D cube (bands, height, width)"
            )
        if array.dtype.kind not in "biuf":
            raise ImageShapeError(
                f"{name}: image data has dtype {array.dtype}; expected numbers (float, integer "
                "or boolean pixels)"
            )
        height, width = array.shape[1:]
        if height < min_size or width < min_size:
            raise ImageShapeError(
                f"{name}: image is {height}x{width} pixels (height x width); skysift needs at "
                f"least {min_size}x{min_size}"
            )
        pixels = np.array(array, dtype=np.float32, copy=True if copy else None)
        bad = ~np.isfinite(pixels).all(axis=0)
        if mask is not None:
            user_mask = np.asarray(mask)
            if user_mask.shape != (height, width):
                raise ImageShapeError(
                    f"{name}: mask has shape {user_mask.shape}; the image is {(height, width)}"
                )
            bad |= user_mask.astype(bool)
        if bad.all():
            raise MaskedImageError(
                f"{name}: all {height * width} pixels are masked (NaN/inf or flagged by the mask)"
            )
        if pixel_scale is None and wcs is not None:
            pixel_scale = pixel_scale_from_wcs(wcs)
        return cls(
            data=pixels,
            mask=bad,
            wcs=wcs,
            bands=tuple(bands) if bands is not None else (),
            pixel_scale=pixel_scale,
            header=header,
        )

    @property
    def n_bands(self) -> int:
        """Number of bands."""
        return self.data.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return self.data.shape[1], self.data.shape[2]

    @property
    def header_fwhm(self) -> float | None:
        """PSF FWHM in pixels of the middle band (the detection band of g,r,i and g,r,z
        images): its ``SEEING`` (arcsec) over the pixel scale; None when either is missing.

        When the bands were read from one file each, ``meta["band_seeing"]`` holds each
        file's own ``SEEING`` (the bluer bands' seeing is wider) and the middle band's is
        used; otherwise the (first) header's.
        """
        per_band = self.meta.get("band_seeing")
        if per_band is not None and len(per_band) == self.n_bands:
            seeing = per_band[self.band_index()]
        else:
            seeing = seeing_arcsec(self.header.get("SEEING") if self.header is not None else None)
        return seeing / self.pixel_scale if seeing and self.pixel_scale else None

    @property
    def header_zero_points(self) -> tuple[float, ...] | None:
        """Each band's zero point from its header (:func:`header_zero_point`), when every
        band has one: bands read one file each (``meta["band_zero_points"]``), or a single
        band; None otherwise (one header cannot say which plane of a cube it is for)."""
        per_band = self.meta.get("band_zero_points")
        if per_band is None and self.n_bands == 1:
            per_band = (header_zero_point(self.header),)
        if per_band is None or len(per_band) != self.n_bands or None in per_band:
            return None
        return tuple(float(z) for z in per_band)

    def band_index(self, name: str | int | None = None) -> int:
        """Index of a band given by name or index; None is the middle band (the detection
        band of g,r,i and g,r,z images, the only band of a single-band image)."""
        if name is None:
            return self.n_bands // 2
        if isinstance(name, int | np.integer):
            if not -self.n_bands <= name < self.n_bands:
                raise InvalidParameterError(
                    f"band index {name} is out of range for {self.n_bands} band(s)"
                )
            return int(name) % self.n_bands
        if name not in self.bands:
            raise InvalidParameterError(f"band {name!r} not in this image; it has {self.bands}")
        return self.bands.index(name)

    def band(self, name: str | int) -> np.ndarray:
        """Return one band's 2-D pixels (read-only) by name or index."""
        return self.data[self.band_index(name)]


def pixel_scale_from_wcs(wcs: WCS) -> float | None:
    """Mean pixel scale in arcsec/pixel of a celestial WCS, or None if it has none."""
    from astropy.wcs.utils import proj_plane_pixel_scales

    try:
        celestial = wcs.celestial
        if celestial.naxis != 2:
            return None
        scales = proj_plane_pixel_scales(celestial)
    except Exception:
        return None
    units = celestial.wcs.cunit
    factor = 3600.0 if str(units[0]) in ("deg", "") else 1.0
    scale = float(np.sqrt(abs(scales[0] * scales[1]))) * factor
    return scale if np.isfinite(scale) and scale > 0 else None


def as_image(image: Image | np.ndarray, mask=None, wcs=None) -> Image:
    """Accept an :class:`Image` or an array; merge an extra ``mask``; attach a ``wcs``.

    The input is never modified: a new :class:`Image` is returned when anything changes.
    """
    if not isinstance(image, Image):
        image = Image.from_array(image, mask=mask, wcs=wcs, min_size=1)
        return image
    if mask is not None:
        extra = np.asarray(mask, dtype=bool)
        if extra.shape != image.shape:
            raise InvalidParameterError(f"mask has shape {extra.shape}; image is {image.shape}")
        image = Image(
            data=image.data,
            mask=image.mask | extra,
            wcs=image.wcs,
            bands=image.bands,
            pixel_scale=image.pixel_scale,
            header=image.header,
            path=image.path,
        )
    if wcs is not None:
        image = Image(
            data=image.data,
            mask=image.mask,
            wcs=wcs,
            bands=image.bands,
            pixel_scale=image.pixel_scale or pixel_scale_from_wcs(wcs),
            header=image.header,
            path=image.path,
        )
    return image
