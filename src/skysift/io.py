"""FITS in, files out.

:func:`read_image` turns one or more FITS files (or a cube) into a validated :class:`Image`;
:func:`atomic_write` makes every file skysift writes appear whole or not at all.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skysift.errors import (
    FitsFileNotFoundError,
    FitsFormatError,
    ImageShapeError,
    InvalidParameterError,
    WCSWarning,
)
from skysift.image import (
    MIN_IMAGE_SIZE,
    Image,
    header_zero_point,
    pixel_scale_from_wcs,
    seeing_arcsec,
)

__all__ = [
    "CATALOG_FORMATS",
    "atomic_write",
    "read_image",
    "read_wcs",
    "write_catalog",
    "write_regions",
]

#: Catalog formats: name -> (file suffix, astropy Table writer format).
CATALOG_FORMATS = {
    "fits": (".fits", "fits"),
    "ecsv": (".ecsv", "ascii.ecsv"),
    "csv": (".csv", "ascii.csv"),
    "parquet": (".parquet", "parquet"),
}

HduSpec = int | str | tuple[str, int] | None
PathLike = str | os.PathLike[str]

#: Header keywords tried, in order, for a band name.
_BAND_KEYWORDS = ("FILTER", "BAND", "FILTNAM", "FILTER1")
#: Header keywords tried, in order, for a pixel scale in arcsec/pixel when there is no WCS.
_SCALE_KEYWORDS = ("PIXSCALE", "PIXSCAL1", "SECPIX", "SECPIX1")


def read_image(
    source: PathLike | Sequence[PathLike],
    *,
    hdu: HduSpec = None,
    mask: PathLike | None = None,
    weight: PathLike | None = None,
    bands: Sequence[str] | None = None,
    section: tuple[slice, slice] | None = None,
    min_size: int = MIN_IMAGE_SIZE,
) -> Image:
    """Read a FITS image (one or more bands) into a validated :class:`Image`.

    Parameters
    ----------
    source : path or sequence of paths
        One FITS file (a 2-D image, or a 3-D cube whose first axis is the band), or several
        files, one band each, on the same pixel grid.
    hdu : int, str or (str, int), optional
        Which HDU to read in every file: an index, an EXTNAME, or (EXTNAME, EXTVER). By default
        the first HDU holding image data (the primary HDU, or the first image extension, which
        is where tile-compressed images live).
    mask : path, optional
        FITS file whose non-zero pixels are bad (same grid as the image).
    weight : path, optional
        FITS inverse-variance (weight) map; pixels with weight <= 0 or non-finite are bad.
    bands : sequence of str, optional
        Band names. By default they come from the FILTER/BAND header keyword, else the file
        name stem (several files), else ``band0, band1, ...``.
    section : (slice, slice), optional
        Read only ``data[section]`` of each band (rows, columns), straight from disk, for
        processing a large image piece by piece. The WCS is shifted to match.
    min_size : int
        Smallest accepted height and width in pixels.

    Returns
    -------
    Image
        float32 pixels in native byte order, mask (NaN/inf pixels, plus ``mask``/``weight``),
        WCS when the header has a valid celestial one, band names, header and path.

    Raises
    ------
    FitsFileNotFoundError
        A file does not exist.
    FitsFormatError
        A file is not FITS, is truncated, has no image HDU, or ``hdu`` is not in it.
    ImageShapeError
        Data that is not 2-D/3-D, bands of different shapes, or an image below ``min_size``.
    MaskedImageError
        Every pixel is masked.

    Notes
    -----
    Files are memory-mapped; each band is read from disk once, straight into the float32 result
    (big-endian FITS data is converted on that one read). Integer and boolean images
    (BITPIX 8/16/32/64, with BZERO/BSCALE applied by astropy) are converted to float32. Leading
    length-1 axes (a radio-style ``(1, 1, H, W)`` cube) are dropped. A WCS that astropy cannot
    parse raises a :class:`~skysift.errors.WCSWarning` and the image has ``wcs=None``.
    """
    paths = [Path(source)] if isinstance(source, str | os.PathLike) else [Path(p) for p in source]
    if not paths:
        raise InvalidParameterError("source: no image files given")
    with contextlib.ExitStack() as stack:
        layers = [_open_layers(path, hdu, section, stack) for path in paths]
        first = layers[0].where
        shapes = {layer.shape[-2:] for layer in layers}
        if len(shapes) > 1:
            described = ", ".join(f"{layer.where}: {layer.shape[-2:]}" for layer in layers)
            raise ImageShapeError(
                f"bands have different shapes ({described}); all bands must share one pixel grid"
            )
        n_planes = sum(layer.n_planes for layer in layers)
        data = np.empty((n_planes, *layers[0].shape[-2:]), dtype=np.float32)
        plane = 0
        for layer in layers:
            layer.read_into(data[plane : plane + layer.n_planes])
            plane += layer.n_planes
    header = layers[0].header
    header_bands = [b for layer in layers for b in layer.band_names]
    band_names = _band_names(bands, header_bands, paths, n_planes)
    pixel_mask = _read_mask_file(mask, data.shape[1:], "mask", section)
    if weight is not None:
        weights = _read_plain(Path(weight), "weight", data.shape[1:], section)
        bad_weight = ~np.isfinite(weights) | (weights <= 0)
        pixel_mask = bad_weight if pixel_mask is None else pixel_mask | bad_weight
    wcs = read_wcs(header, name=first, section=section)
    pixel_scale = pixel_scale_from_wcs(wcs) if wcs is not None else _header_scale(header)
    image = Image.from_array(
        data,
        mask=pixel_mask,
        wcs=wcs,
        bands=band_names,
        pixel_scale=pixel_scale,
        header=header,
        min_size=min_size,
        name=first,
        copy=False,
    )
    object.__setattr__(image, "path", str(paths[0]))
    if len(layers) > 1:  # one file per band: keep each band's own seeing (Image.header_fwhm)
        image.meta["band_seeing"] = tuple(
            seeing_arcsec(layer.header.get("SEEING"))
            for layer in layers
            for _ in range(layer.n_planes)
        )
        # and its zero point (Image.header_zero_points), for the colours of the segmenter
        image.meta["band_zero_points"] = tuple(
            header_zero_point(layer.header) if layer.n_planes == 1 else None
            for layer in layers
            for _ in range(layer.n_planes)
        )
    return image


def read_wcs(header: Any, *, name: str = "header", section: tuple[slice, slice] | None = None):
    """Return the celestial WCS of a FITS header, or None.

    A header without celestial keywords gives None silently; one whose WCS astropy cannot
    build gives None and a :class:`~skysift.errors.WCSWarning` naming the problem.
    """
    from astropy.wcs import WCS, FITSFixedWarning

    if header is None or not any(k.startswith("CTYPE") for k in header):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FITSFixedWarning)
            wcs = WCS(header, naxis=2)
            if not wcs.has_celestial:
                return None
            wcs = wcs.celestial
            centre = np.array([[header.get("NAXIS1", 2) / 2.0, header.get("NAXIS2", 2) / 2.0]])
            sky = wcs.all_pix2world(centre, 0)
            if not np.isfinite(sky).all():
                raise ValueError("the image centre has no finite sky position")
    except Exception as exc:
        warnings.warn(
            f"{name}: the WCS in the header could not be used ({type(exc).__name__}: {exc}); "
            "sky coordinates will be omitted",
            WCSWarning,
            stacklevel=2,
        )
        return None
    if section is not None:
        wcs = wcs.slice(section)
    return wcs


@contextlib.contextmanager
def atomic_write(path: PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Write a file so it appears complete or not at all.

    Yields a temporary path in the destination directory; when the block ends without an
    exception the temporary file is renamed onto ``path`` (atomic on POSIX), otherwise it is
    deleted and ``path`` is left as it was.

    Examples
    --------
    >>> with atomic_write("catalog.ecsv") as tmp:  # doctest: +SKIP
    ...     table.write(tmp, format="ascii.ecsv")
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".part" + "".join(target.suffixes), dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # writers such as astropy refuse to overwrite; hand them a fresh name
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make outputs private
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_catalog(table, path: PathLike, *, format: str | None = None, overwrite: bool = False):
    """Write a catalog atomically as FITS, ECSV, CSV or Parquet.

    Parameters
    ----------
    table : astropy.table.Table or QTable
    path : path
        Output file; the format follows its suffix unless ``format`` is given.
    format : str, optional
        One of :data:`CATALOG_FORMATS`.
    overwrite : bool
        Replace an existing file.

    Notes
    -----
    Units survive in FITS (TUNIT), ECSV and Parquet (astropy's metadata); CSV keeps only values.
    """
    target = Path(path)
    if format is None:
        by_suffix = {suffix: name for name, (suffix, _) in CATALOG_FORMATS.items()}
        format = by_suffix.get(target.suffix.lower())
        if format is None:
            raise InvalidParameterError(
                f"{target}: cannot tell the catalog format from the suffix; use one of "
                f"{sorted(s for s, _ in CATALOG_FORMATS.values())} or pass format="
            )
    if format not in CATALOG_FORMATS:
        raise InvalidParameterError(f"format {format!r} is not one of {sorted(CATALOG_FORMATS)}")
    writer = CATALOG_FORMATS[format][1]
    if format == "fits":
        table = _fits_ready(table)
    with atomic_write(target, overwrite=overwrite) as tmp:
        table.write(tmp, format=writer)
    return target


def _fits_ready(table):
    """A copy whose metadata fits FITS headers: the whole meta as one JSON card."""
    import json

    copy = table.copy(copy_data=False)
    copy.meta = {"SKYMETA": json.dumps(dict(table.meta), default=str)} if table.meta else {}
    return copy


def write_regions(
    table,
    path: PathLike,
    *,
    radius: float = 5.0,
    colors: dict[str, str] | None = None,
    overwrite: bool = False,
):
    """Write sources as a DS9 region file (circles labelled by id) through ``regions``.

    Positions are the catalog's 0-based ``x``, ``y``; ``regions`` writes DS9's 1-based image
    coordinates. Circles are coloured by group (:func:`skysift.catalog.source_groups`: the
    segmenter's ``morphology`` where it segmented the source, else ``p_star`` >= 0.5): stars
    cyan, galaxies orange, not classified green; a source with ``p_shred`` >= 0.5 (a clump of
    a larger galaxy, :mod:`skysift.shreds`) magenta.
    """
    from regions import CirclePixelRegion, PixCoord, RegionMeta, Regions, RegionVisual

    palette = {"star": "cyan", "galaxy": "orange", "shred": "magenta", "": "green"} | (colors or {})
    x = np.asarray(getattr(table["x"], "value", table["x"]), dtype=float)
    y = np.asarray(getattr(table["y"], "value", table["y"]), dtype=float)
    ids = np.asarray(table["id"]) if "id" in table.colnames else np.arange(1, len(x) + 1)
    kinds = _region_kinds(table)
    shapes = [
        CirclePixelRegion(
            center=PixCoord(float(xi), float(yi)),
            radius=radius,
            meta=RegionMeta({"text": str(int(i))}),
            visual=RegionVisual({"color": palette.get(kind, palette[""])}),
        )
        for xi, yi, i, kind in zip(x, y, ids, kinds, strict=True)
    ]
    with atomic_write(path, overwrite=overwrite) as tmp:
        tmp.write_text(Regions(shapes).serialize(format="ds9"))
    return Path(path)


def _region_kinds(table) -> list[str]:
    from skysift.catalog import source_groups

    return [str(group) for group in source_groups(table)]


# -- helpers ---------------------------------------------------------------------------------


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _describe(path: Path, hdu: HduSpec) -> str:
    return f"{path.name}" if hdu is None else f"{path.name}[{hdu}]"


def _open_fits(path: Path):
    from astropy.io import fits

    if not path.exists():
        raise FitsFileNotFoundError(f"{path}: no such file")
    if path.is_dir():
        raise FitsFormatError(f"{path}: is a directory, not a FITS file")
    with open(path, "rb") as handle:
        start = handle.read(30)
    if not start.startswith(b"SIMPLE  ="):
        raise FitsFormatError(
            f"{path}: not a FITS file (it does not start with a SIMPLE card; first bytes "
            f"{start[:16]!r})"
        )
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # scaling (BZERO/BSCALE/BLANK) is applied by _Layer.read_into: astropy refuses to
            # scale memory-mapped data
            hdul = fits.open(path, memmap=True, lazy_load_hdus=False, do_not_scale_image_data=True)
    except Exception as exc:
        raise FitsFormatError(
            f"{path}: unreadable FITS file, truncated or corrupt ({type(exc).__name__}: {exc})"
        ) from exc
    problems = [str(w.message) for w in caught if "truncat" in str(w.message).lower()]
    if problems:
        hdul.close()
        raise FitsFormatError(f"{path}: the file is truncated ({problems[0]})")
    return hdul


def _is_image_hdu(hdu) -> bool:
    from astropy.io import fits

    image_types = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)
    return isinstance(hdu, image_types) and hdu.header.get("NAXIS", 0) > 0


def _select_hdu(hdul, path: Path, hdu: HduSpec):
    if hdu is None:
        for candidate in hdul:
            if _is_image_hdu(candidate):
                return candidate
        kinds = ", ".join(type(h).__name__ for h in hdul)
        raise FitsFormatError(f"{path}: no HDU holds image data (HDUs: {kinds})")
    try:
        selected = hdul[hdu]
    except (IndexError, KeyError) as exc:
        names = [h.name or str(i) for i, h in enumerate(hdul)]
        raise FitsFormatError(
            f"{path}: HDU {hdu!r} not found; the file has {len(hdul)} HDU(s): {names}"
        ) from exc
    if not _is_image_hdu(selected):
        raise FitsFormatError(
            f"{path}[{hdu}]: HDU is a {type(selected).__name__} without image data"
        )
    return selected


@dataclass
class _Layer:
    """One image HDU opened for reading: its planes are read straight into the caller's array."""

    hdu: Any
    index: tuple
    where: str
    header: Any
    shape: tuple[int, ...]

    @property
    def n_planes(self) -> int:
        return self.shape[0] if len(self.shape) == 3 else 1

    @property
    def band_names(self) -> list[str | None]:
        if len(self.shape) == 3:
            return [None] * self.shape[0]
        return [_header_band(self.header)]

    def read_into(self, out: np.ndarray) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                raw = np.asarray(self.hdu.section[self.index]).reshape(out.shape)
                out[...] = raw
                _apply_scaling(out, raw, self.header)
        except Exception as exc:
            raise FitsFormatError(
                f"{self.where}: could not read the image data; the file is probably truncated "
                f"({type(exc).__name__}: {exc})"
            ) from exc


def _apply_scaling(out: np.ndarray, raw: np.ndarray, header) -> None:
    """FITS integer scaling in place: ``value = raw * BSCALE + BZERO``, BLANK -> NaN."""
    if raw.dtype.kind not in "iu":
        return
    blank = header.get("BLANK")
    scale, zero = header.get("BSCALE", 1.0), header.get("BZERO", 0.0)
    if scale != 1.0:
        out *= scale
    if zero != 0.0:
        out += zero
    if blank is not None:
        out[raw == blank] = np.nan


def _open_layers(
    path: Path, hdu: HduSpec, section: tuple[slice, slice] | None, stack: contextlib.ExitStack
) -> _Layer:
    hdul = stack.enter_context(_open_fits(path))
    selected = _select_hdu(hdul, path, hdu)
    where = f"{path.name}[{hdu if hdu is not None else selected.name or 0}]"
    full_shape = tuple(selected.shape)
    shape = full_shape
    while len(shape) > 2 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) not in (2, 3):
        raise ImageShapeError(
            f"{where}: image data is {len(full_shape)}-D with shape {full_shape}; expected a "
            "2-D image or a 3-D cube (bands, height, width)"
        )
    index = (0,) * (len(full_shape) - len(shape)) + (slice(None),) * (len(shape) - 2)
    index += section or (slice(None), slice(None))
    if section is not None:
        rows = range(*section[0].indices(shape[-2]))
        cols = range(*section[1].indices(shape[-1]))
        shape = (*shape[:-2], len(rows), len(cols))
    return _Layer(
        hdu=selected,
        index=index,
        where=where,
        header=selected.header.copy(),
        shape=shape,
    )


def _read_plain(
    path: Path, what: str, shape: tuple[int, ...], section: tuple[slice, slice] | None
) -> np.ndarray:
    with contextlib.ExitStack() as stack:
        layer = _open_layers(path, None, section, stack)
        array = np.empty(layer.shape, dtype=np.float32)
        layer.read_into(array)
    if array.shape != shape:
        raise ImageShapeError(
            f"{path.name}: {what} map has shape {array.shape}; the image is {shape}"
        )
    return array


def _read_mask_file(
    mask: PathLike | None,
    shape: tuple[int, ...],
    what: str,
    section: tuple[slice, slice] | None,
) -> np.ndarray | None:
    if mask is None:
        return None
    values = _read_plain(Path(mask), what, shape, section)
    return values != 0  # NaN counts as non-zero: an unreadable mask value is bad


def _header_band(header) -> str | None:
    for key in _BAND_KEYWORDS:
        value = header.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _band_names(
    bands: Sequence[str] | None,
    header_bands: list[str | None],
    paths: list[Path],
    n_bands: int,
) -> tuple[str, ...]:
    if bands is not None:
        names = tuple(str(b) for b in bands)
        if len(names) != n_bands:
            raise InvalidParameterError(
                f"bands: {len(names)} names {names} given for {n_bands} band(s) in the input"
            )
        return names
    if all(header_bands) and len(set(header_bands)) == n_bands:
        return tuple(b for b in header_bands if b is not None)
    if len(paths) == n_bands > 1 and len({p.stem for p in paths}) == n_bands:
        return tuple(p.stem for p in paths)
    if n_bands == 1 and header_bands[0]:
        return (header_bands[0],)
    return tuple(f"band{i}" for i in range(n_bands))


def _header_scale(header) -> float | None:
    if header is None:
        return None
    for key in _SCALE_KEYWORDS:
        value = header.get(key)
        if isinstance(value, int | float) and np.isfinite(value) and value > 0:
            return float(value)
    return None
