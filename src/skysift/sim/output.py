"""Files of a simulated field: FITS images with a TAN WCS, truth tables, masks and a preview."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from skysift.io import atomic_write
from skysift.sim.artifacts import ARTIFACT_KINDS

if TYPE_CHECKING:
    from skysift.sim.field import FieldConfig, SimulatedField
    from skysift.sim.presets import SurveyPreset

__all__ = ["field_wcs", "write_field"]


def field_wcs(config: FieldConfig, preset: SurveyPreset):
    """TAN WCS centred on ``(config.ra, config.dec)``, north up, east left."""
    from astropy.wcs import WCS

    height, width = config.shape
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [config.ra, config.dec]
    wcs.wcs.crpix = [(width + 1) / 2, (height + 1) / 2]  # FITS pixels are 1-based
    scale = preset.pixel_scale / 3600.0
    wcs.wcs.cd = [[-scale, 0.0], [0.0, scale]]
    wcs.wcs.cunit = ["deg", "deg"]
    wcs.wcs.radesys = "ICRS"
    return wcs


def _image_header(field: SimulatedField, band: str):
    from skysift import __version__

    preset, config = field.preset, field.config
    header = field.image.wcs.to_header()
    sky_adu = float(np.median(field.background[preset.band_names.index(band)]))
    cards = [
        ("BUNIT", "adu", "pixel unit"),
        ("FILTER", band, "band"),
        ("EXPTIME", preset.exposure_time, "[s] exposure time"),
        ("GAIN", preset.gain, "[e-/adu] gain"),
        ("RDNOISE", preset.read_noise, "[e-] read noise"),
        ("SATURATE", preset.saturation, "[adu] saturation level"),
        ("MAGZP", round(preset.zero_point_adu(band), 4), "AB mag giving 1 adu in the exposure"),
        ("PIXSCALE", preset.pixel_scale, "[arcsec/pixel] pixel scale"),
        (
            "SEEING",
            round(preset.fwhm_in_band(field.info["psf_fwhm"], band), 4),
            "[arcsec] PSF FWHM at the optical centre",
        ),
        ("SKYLEVEL", round(sky_adu, 3), "[adu] median sky + offsets (not subtracted)"),
        ("ORIGIN", f"skysift {__version__}", "simulated with skysift.sim (GalSim)"),
        ("SIMSURV", preset.name, "survey preset"),
        ("SIMSEED", config.seed, "simulation seed"),
        ("SIMDENS", float(config.density), "[arcmin-2] sources brighter than 5-sigma depth"),
        ("SIMDEPTH", round(field.info["depth_5sigma"], 3), "5-sigma point-source depth"),
        ("SIMNSRC", field.info["n_sources"], "truth sources"),
        ("SIMNART", field.info["n_artifacts"], "truth artifacts"),
    ]
    for key, value, comment in cards:
        header[key] = (value, comment)
    return header


def write_field(
    field: SimulatedField, out_dir, *, name: str = "field", overwrite: bool = False
) -> dict[str, Path]:
    """Write a simulated field into ``out_dir`` and return the paths written.

    Files
    -----
    ``{name}_{band}.fits``
        One image per band (float32, ADU) with a TAN WCS and header keywords describing the
        simulation (``SIMSURV``, ``SIMSEED``, ``SIMDENS``, ``GAIN``, ``MAGZP`` ...).
    ``{name}_truth.ecsv``
        The truth table, with units and column descriptions.
    ``{name}_artifacts.ecsv``
        One row per artifact (id, kind, band, x, y, npix, length, angle, peak).
    ``{name}_masks.fits``
        Extensions ``FOOTPRINTS`` (int32 source ids), ``LOCMASK`` (uint8 ASID-L target),
        ``ARTIFACTS`` (int32 artifact ids) and one uint8 mask per artifact kind
        (``COSMIC_RAY``, ``HOT_PIXEL`` ...), all with the image WCS.
    ``{name}_config.json``
        The :class:`FieldConfig` that reproduces the field.
    ``{name}_preview.png``
        A preview of the image.
    """
    from astropy.io import fits

    from skysift.sim.field import config_json
    from skysift.sim.preview import preview_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    targets = {f"image_{b}": out / f"{name}_{b}.fits" for b in field.image.bands}
    targets |= {
        "truth": out / f"{name}_truth.ecsv",
        "artifacts": out / f"{name}_artifacts.ecsv",
        "masks": out / f"{name}_masks.fits",
        "config": out / f"{name}_config.json",
        "preview": out / f"{name}_preview.png",
    }
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{len(existing)} output file(s) already exist, e.g. {existing[0]}; pass "
            "overwrite=True (--overwrite) to replace them"
        )
    for b, band in enumerate(field.image.bands):
        hdu = fits.PrimaryHDU(np.asarray(field.image.data[b]), header=_image_header(field, band))
        with atomic_write(targets[f"image_{band}"]) as tmp:
            hdu.writeto(tmp)
    with atomic_write(targets["truth"]) as tmp:
        field.truth.write(tmp, format="ascii.ecsv")
    with atomic_write(targets["artifacts"]) as tmp:
        field.artifacts.table().write(tmp, format="ascii.ecsv")
    wcs_header = field.image.wcs.to_header()
    extensions = [
        fits.ImageHDU(field.footprints, header=wcs_header, name="FOOTPRINTS"),
        fits.ImageHDU(field.localization_mask.astype(np.uint8), header=wcs_header, name="LOCMASK"),
        fits.ImageHDU(field.artifacts.label_map, header=wcs_header, name="ARTIFACTS"),
    ]
    extensions += [
        fits.ImageHDU(
            field.artifact_mask(kind).astype(np.uint8), header=wcs_header, name=kind.upper()
        )
        for kind in ARTIFACT_KINDS
    ]
    with atomic_write(targets["masks"]) as tmp:
        fits.HDUList([fits.PrimaryHDU(), *extensions]).writeto(tmp)
    with atomic_write(targets["config"]) as tmp:
        tmp.write_text(config_json(field.config) + "\n")
    with atomic_write(targets["preview"]) as tmp:
        preview_png(field, tmp)
    paths.update(targets)
    return paths
