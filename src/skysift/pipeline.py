"""``Pipeline(config)(image) -> Result``: the stages of skysift on one image.

Stages run in order; the localizer's sources feed every later stage. A stage that cannot run
(its model is not shipped yet, or the image lacks what it needs) is skipped with the reason
recorded in ``Result.skipped`` and logged, never silently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from skysift.config import PipelineConfig
from skysift.errors import PsfUnknownError
from skysift.result import Result

__all__ = ["Pipeline", "run"]

log = logging.getLogger(__name__)


@dataclass
class Pipeline:
    """The skysift pipeline, configured once and applied to many images.

    Parameters
    ----------
    config : PipelineConfig, optional
    """

    config: PipelineConfig = field(default_factory=PipelineConfig)
    _localizer: object = field(default=None, init=False, repr=False)
    _classifier: object = field(default=None, init=False, repr=False)
    _segmenter: object = field(default=None, init=False, repr=False)
    _shreds: object = field(default=None, init=False, repr=False)

    def __call__(self, image, *, mask=None, wcs=None, progress: bool = False) -> Result:
        """Run the configured stages on ``image`` (an :class:`Image`, array or cube)."""
        from skysift.image import as_image
        from skysift.localizer import Localizer

        image = as_image(image, mask, wcs)
        timings: dict[str, float] = {}
        skipped: dict[str, str] = {}
        if self._localizer is None:
            self._localizer = Localizer(self.config.localize)
        start = time.perf_counter()
        catalog, probability = self._localizer(image, progress=progress)
        timings["localize"] = time.perf_counter() - start
        stages_run = ["localize"]
        segmentation = None
        for stage in self.config.stages[1:]:
            start = time.perf_counter()
            if stage == "classify" and len(catalog):
                catalog = self._classify(image, catalog, progress)
            elif stage == "classify":
                pass  # nothing to classify; the empty catalog already has the column
            elif stage == "shreds":
                reason, fwhm = self._shreds_setup(image)
                if reason is not None:
                    skipped[stage] = reason
                    log.warning("skipping stage %r: %s", stage, reason)
                    continue
                from skysift.shreds import find_shreds

                catalog = find_shreds(image, catalog, classifier=self._shreds, psf_fwhm=fwhm)
            elif stage == "segment" and (reason := self._segmenter_unavailable(image)):
                skipped[stage] = reason
                log.warning("skipping stage %r: %s", stage, reason)
                continue
            elif stage == "segment":
                try:
                    catalog, segmentation = self._segment(image, catalog, progress)
                except PsfUnknownError as exc:  # raised before any tile is segmented
                    skipped[stage] = str(exc)
                    log.warning("skipping stage %r: %s", stage, exc)
                    continue
            else:  # pragma: no cover - KNOWN_STAGES and this chain name the same stages
                raise AssertionError(f"stage {stage!r} has no runner")
            timings[stage] = time.perf_counter() - start
            stages_run.append(stage)
        catalog.meta["stages_run"] = stages_run
        catalog.meta["stages_skipped"] = skipped
        catalog.meta["config"] = self.config.to_dict()
        return Result(
            catalog=catalog,
            probability_map=probability,
            segmentation=segmentation,
            config=self.config,
            wcs=image.wcs,
            timings=timings,
            skipped=skipped,
            image=image,
        )

    def _shreds_setup(self, image) -> tuple[str | None, float | None]:
        """Why the shreds stage cannot run on ``image`` (None: it can), and the PSF FWHM in
        pixels it runs with: the config's, the header's, else measured on the image."""
        from skysift.models.registry import weights_dir

        name = self.config.shreds.model
        if self._shreds is None:
            if not (weights_dir() / f"{name}.json").exists():
                return f"the shred classifier {name!r} is not shipped", None
            from skysift.shreds import ShredClassifier

            self._shreds = ShredClassifier(name)
        if image.n_bands != self._shreds.bands:
            return (
                f"the shred classifier {name!r} takes {self._shreds.bands} bands (g, r, z); "
                f"the image has {image.n_bands} ({', '.join(image.bands)})"
            ), None
        fwhm = self.config.shreds.psf_fwhm or image.header_fwhm
        if fwhm is None:
            from skysift.seeing import measure_psf_fwhm

            fwhm = float(measure_psf_fwhm(image))
            if not np.isfinite(fwhm):
                return (
                    "the PSF FWHM is not in the header (SEEING) and could not be measured on "
                    "the image; give shreds.psf_fwhm (pixels)"
                ), None
        return None, float(fwhm)

    def _segmenter_unavailable(self, image) -> str | None:
        """Why the segment stage cannot run on ``image`` (None: it can)."""
        from skysift.models.registry import weights_dir

        name = self.config.segment.model
        if self._segmenter is None and not (weights_dir() / f"{name}.json").exists():
            return f"the segmenter model {name!r} is not shipped"
        if image.n_bands not in (1, 3):
            return (
                f"the segmenter takes 3 bands or 1 band; the image has {image.n_bands} "
                f"({', '.join(image.bands)})"
            )
        return None

    def _segment(self, image, catalog, progress: bool):
        import warnings

        from skysift.errors import EmptyCatalogWarning
        from skysift.segment import Segmenter, segment

        if self._segmenter is None:
            self._segmenter = Segmenter(self.config.segment)
        with warnings.catch_warnings():
            # an empty segmentation is reported by the catalog itself
            warnings.simplefilter("ignore", EmptyCatalogWarning)
            return segment(image, catalog, segmenter=self._segmenter, progress=progress)

    def _classify(self, image, catalog, progress: bool):
        from skysift.stargalaxy import StarGalaxyClassifier, classify_stars

        options = self.config.classify
        if self._classifier is None:
            self._classifier = StarGalaxyClassifier(options.model, calibrated=options.calibrated)
        return classify_stars(
            image,
            catalog,
            geometry=options.geometry(image.shape),
            band=options.band,
            classifier=self._classifier,
            progress=progress,
        )


def run(
    source,
    *,
    config: PipelineConfig | None = None,
    mask=None,
    wcs=None,
    hdu=None,
    progress: bool = False,
) -> Result:
    """Run the pipeline on a FITS path (or list of band files), an array, or an Image.

    Examples
    --------
    >>> result = skysift.run("frame.fits")  # doctest: +SKIP
    >>> result.write("out/")  # doctest: +SKIP
    """
    import os

    from skysift.io import read_image

    if isinstance(source, str | os.PathLike) or (
        isinstance(source, list | tuple) and source and isinstance(source[0], str | os.PathLike)
    ):
        source = read_image(source, hdu=hdu)
    return Pipeline(config or PipelineConfig())(source, mask=mask, wcs=wcs, progress=progress)
