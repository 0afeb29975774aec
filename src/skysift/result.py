"""The result of running the pipeline on one image, and how it is written."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from skysift.config import PipelineConfig
from skysift.errors import InvalidParameterError
from skysift.io import CATALOG_FORMATS, atomic_write, write_catalog, write_regions

__all__ = ["Result"]


@dataclass
class Result:
    """Catalog and maps of one image.

    Attributes
    ----------
    catalog : astropy.table.QTable
        One row per source, skysift schema (``skysift.catalog``).
    probability_map : numpy.ndarray or None
        The localizer's source-probability map, ``(height, width)``.
    segmentation : numpy.ndarray or None
        Label map whose labels are catalog ids (when the segmenter ran).
    config : PipelineConfig
        The effective configuration.
    wcs : astropy.wcs.WCS or None
    timings : dict
        Seconds per stage.
    skipped : dict
        Stage -> why it did not run.
    image : Image or None
        The input image (a read-only view, not a copy), for the report.
    """

    catalog: Any
    probability_map: np.ndarray | None
    config: PipelineConfig
    segmentation: np.ndarray | None = None
    wcs: Any = None
    timings: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    image: Any = None

    def write(
        self,
        out_dir,
        *,
        name: str = "catalog",
        formats: tuple[str, ...] | None = None,
        overwrite: bool = False,
    ) -> dict[str, Path]:
        """Write the catalog (each format), regions, maps and the effective config.

        Every file goes to ``out_dir`` under ``name`` (no path separators allowed, so nothing
        escapes ``out_dir``), atomically; existing files are kept unless ``overwrite``.
        Returns the paths by kind.
        """
        if not name or Path(name).name != name or name in (".", ".."):
            raise InvalidParameterError(
                f"name {name!r} must be a plain file name (outputs never leave out_dir)"
            )
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        formats = tuple(formats or self.config.formats)
        targets: dict[str, Path] = {
            f"catalog_{fmt}": out / f"{name}{CATALOG_FORMATS[fmt][0]}" for fmt in formats
        }
        if self.config.regions:
            targets["regions"] = out / f"{name}.reg"
        if self.config.probability_map and self.probability_map is not None:
            targets["probability_map"] = out / f"{name}_probability.fits"
        if self.config.segmentation_map and self.segmentation is not None:
            targets["segmentation"] = out / f"{name}_segmentation.fits"
        if self.config.overlay and self.image is not None:
            targets["overlay"] = out / f"{name}_overlay.png"
        if self.config.report and self.image is not None:
            targets["report"] = out / f"{name}_report.html"
        targets["config"] = out / f"{name}_config.yaml"
        existing = [str(p) for p in targets.values() if p.exists()]
        if existing and not overwrite:
            raise FileExistsError(
                f"{existing[0]} exists (and {len(existing) - 1} more); pass overwrite=True "
                "(--overwrite) to replace them"
            )
        for fmt in formats:
            write_catalog(self.catalog, targets[f"catalog_{fmt}"], format=fmt, overwrite=True)
        if "regions" in targets:
            write_regions(self.catalog, targets["regions"], overwrite=True)
        if "probability_map" in targets:
            self._write_map(self.probability_map, targets["probability_map"])
        if "segmentation" in targets:
            self._write_segmentation(targets["segmentation"])
        if "overlay" in targets:
            from skysift.report import overlay_png

            with atomic_write(targets["overlay"]) as tmp:
                tmp.write_bytes(
                    overlay_png(self.image, self.catalog, segmentation=self.segmentation)
                )
        if "report" in targets:
            from skysift.report import write_report

            write_report(
                self, self.image, targets["report"], title=f"skysift: {name}", overwrite=True
            )
        with atomic_write(targets["config"]) as tmp:
            tmp.write_text(self.config.to_yaml())
        return targets

    def _write_map(self, data: np.ndarray, path: Path) -> None:
        from astropy.io import fits

        header = self.wcs.to_header() if self.wcs is not None else None
        with atomic_write(path) as tmp:
            fits.PrimaryHDU(data, header=header).writeto(tmp)

    def _write_segmentation(self, path: Path) -> None:
        """The label map as a losslessly tile-compressed image (RICE, as ``fpack`` writes
        integer images: a 2048² map of 16.8 MB takes about 0.4 MB) in the ``SEGMENTATION``
        extension, with the image's WCS; ``astropy.io.fits.getdata`` and DS9 find it there."""
        from astropy.io import fits

        header = self.wcs.to_header() if self.wcs is not None else fits.Header()
        header["COMMENT"] = "skysift segmentation map: each pixel holds the catalog id of the"
        header["COMMENT"] = "source it belongs to; 0 is no source (and every masked pixel)."
        if "segmenter" in self.catalog.meta:
            header["SEGMODEL"] = (str(self.catalog.meta["segmenter"]), "skysift segmenter")
        segmentation = np.asarray(self.segmentation, dtype=np.int32)
        hdu = fits.CompImageHDU(
            segmentation, header=header, name="SEGMENTATION", compression_type="RICE_1"
        )
        with atomic_write(path) as tmp:
            fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(tmp)
