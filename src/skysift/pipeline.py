"""``Pipeline(config)(image) -> Result``: the stages of skysift on one image.

Stages run in order; the localizer's sources feed every later stage. A stage that cannot run
(its model is not shipped yet, or the image lacks what it needs) is skipped with the reason
recorded in ``Result.skipped`` and logged, never silently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from skysift.config import PipelineConfig
from skysift.result import Result

__all__ = ["Pipeline", "run"]

log = logging.getLogger(__name__)

_NOT_SHIPPED = {
    "shreds": "the shred classifier has no shipped weights yet",
    "segment": "the Mask R-CNN segmenter has no shipped weights yet (issue 5)",
}


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
        for stage in self.config.stages[1:]:
            start = time.perf_counter()
            if stage == "classify" and len(catalog):
                catalog = self._classify(image, catalog, progress)
            elif stage == "classify":
                pass  # nothing to classify; the empty catalog already has the column
            else:
                reason = _NOT_SHIPPED.get(stage, "not implemented")
                skipped[stage] = reason
                log.warning("skipping stage %r: %s", stage, reason)
                continue
            timings[stage] = time.perf_counter() - start
            stages_run.append(stage)
        catalog.meta["stages_run"] = stages_run
        catalog.meta["stages_skipped"] = skipped
        catalog.meta["config"] = self.config.to_dict()
        return Result(
            catalog=catalog,
            probability_map=probability,
            config=self.config,
            wcs=image.wcs,
            timings=timings,
            skipped=skipped,
            image=image,
        )

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
