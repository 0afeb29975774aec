"""Segment an image of any size with the Mask R-CNN segmenter: instances -> label map.

The image is normalized once (per band, whole-image statistics, as in training), cut into
overlapping tiles of the network's size, and each tile is segmented. An instance belongs to the
one tile whose kept (central) region holds its box centre, so an object on a tile seam is
reported once, by the tile that sees it whole (objects up to ``2 * margin`` pixels across).
Instances are painted into a label map in ascending order of their detection score (the more
confident detection owns contested pixels; a galaxy's type probability plays no part); one
left with less than :data:`MIN_KEPT_FRACTION` of its mask is a fragment or second hypothesis
of a more confident one and is dropped. Area, box and centroid are measured on that map.
Centroids are windowed centroids of the sky-subtracted light started at the mask's peak; the
centre of mass inside the mask (the Mask Galaxy paper's section 5.4) is kept as ``x_mass,
y_mass``.

Given a catalog of localized sources, each instance takes the id of the brightest source inside
its mask; instances without one are added as new rows flagged ``unmatched_instance``. The label
map then holds catalog ids.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from skysift.augmentation import check_augment
from skysift.catalog import FLAGS
from skysift.errors import EmptyCatalogWarning, InvalidParameterError, PsfUnknownError
from skysift.image import Image

__all__ = [
    "Instances",
    "SegmentConfig",
    "Segmenter",
    "inside_other_footprints",
    "network_input",
    "on_pixels_with_data",
    "segment",
    "star_probabilities",
    "touching_footprints",
    "truncated_footprints",
]

log = logging.getLogger(__name__)

#: Fewest bright point sources a PSF FWHM is measured on when neither the config nor the
#: header gives it (a measurement on fewer strays by 5-10 %: docs/models.md).
PSF_MIN_SOURCES = 20
#: An instance left with less than this fraction of its own mask once the more confident
#: instances are painted is a fragment or a second hypothesis of one of them (nested masks
#: of one bright galaxy, which box suppression does not merge), and is dropped.
MIN_KEPT_FRACTION = 0.5


@dataclass(frozen=True)
class SegmentConfig:
    """Options of the segment stage.

    Parameters
    ----------
    model : str
        Shipped model name: ``"segmenter"``, ``"segmenter_psf"`` (the same network
        fine-tuned with the PSF FWHM as an input: better star/galaxy separation; it needs
        the FWHM, see ``psf_fwhm``) or ``"segmenter_psf_typical"`` (that one fine-tuned on
        four times Burke et al.'s typical fields). :meth:`recommended` gives the chain that
        measured best in galaxy-dominated fields.
    tile : int
        Tile side (pixels) at inference. The network is convolutional and was trained on
        256x256 images; larger tiles (pixels are never resampled) spend less time on the
        overlaps.
    margin : int
        Overlap context on each side of a tile (pixels); objects up to twice this across are
        segmented whole.
    score_threshold : float
        Lowest detection score kept (:attr:`Instances.scores`; a galaxy's type probability
        does not lower it).
    mask_threshold : float
        Mask probability above which a pixel belongs to the instance.
    large_mask_threshold : float or None
        Mask probability that paints an instance of ``large_mask_area`` pixels or more (at
        ``mask_threshold``) into the label map. The detector's masks of large bright galaxies
        stop short of their 2-sigma isophote, while those of faint compact sources already
        reach past theirs (docs/models.md, session 24), so one threshold cannot suit both.
        The second look and the shred classifier still see the ``mask_threshold`` masks.
        None paints every instance at ``mask_threshold``.
    large_mask_area : int
        Pixels (at ``mask_threshold``) from which ``large_mask_threshold`` applies.
    mask_box_scale : float
        The mask of a detection whose box is ``mask_box_side`` pixels or more on its longer
        side is drawn in that box enlarged this many times about its centre (1 draws every
        mask in its own box, as torchvision's Mask R-CNN does). The mask head draws inside
        the box it is given, and the boxes of large bright galaxies stop short of their
        2-sigma isophote (docs/models.md, session 25). The second look and the shred
        classifier see these masks too; at most 1.5 (beyond ~1.4 the box is one the mask head
        never saw in training).
    mask_box_side : float
        Longer box side (pixels) from which ``mask_box_scale`` applies.
    augment : str or None
        Test-time augmentation: each tile is segmented in 4 views (``"flips"``: flipped
        left-right, up-down, or both) or 8 (``"d4"``: also turned by 90 degrees), and the
        views' detections of one source are fused: mean mask probabilities, mean box,
        P(star) and P(galaxy) averaged over the views (:mod:`skysift.segment_augment`).
        ``"flips"`` raised the all-instance mask mAP@0.5 of the held-out test images from
        0.339 to 0.369 (mask mAP@[0.5:0.95] 0.163 -> 0.210) for 4 times the detector's
        time; Burke et al.'s figure moved within its noise, and ``"d4"`` did worse than
        ``"flips"`` on validation (docs/models.md, session 28). The views keep every
        detection, so the early score cut is off. None (default): one view.
    batch_size : int
        Tiles per network call.
    centroid_sigma : float
        Gaussian sigma (pixels) of the windowed centroid of each instance (about the PSF's
        sigma: the centroid follows the light of the core, not of the whole mask).
    galaxy_types : str or None
        Shipped galaxy-type network that re-types the galaxy instances from stamps of each
        galaxy (:mod:`skysift.morphology`); None keeps the Mask R-CNN's own class head.
    psf_fwhm : float or None
        Detection-band PSF FWHM (pixels) for a model with a PSF channel
        (``SegmenterConfig(psf_channel=True)``, e.g. ``segmenter_psf``) and for the second
        look; None takes the header's ``SEEING`` (arcsec) over the pixel scale, else the FWHM
        measured on the image's stars (:func:`skysift.seeing.measure_psf_fwhm`). Otherwise
        unused.
    second_look : str, tuple of str, or None
        Shipped second-look network (``"second_look"``) that decides again, from a cutout of
        each instance and the PSF FWHM, whether it is a star or a galaxy
        (:mod:`skysift.second_look`); its score becomes P(source) x P(group). Several names
        average their looks' probabilities, each look shown the masks it was trained on
        (:func:`skysift.second_look.looks_probabilities`). None keeps the Mask R-CNN's
        decision. The look sees every detection; ``score_threshold`` then
        applies to P(source) x P(group). An instance larger than the look's
        32-pixel cutout keeps the detector's class and score
        (:meth:`skysift.second_look.SecondLook.sees_whole`).
    star_fraction : float or None
        Expected fraction of stars among the stars and galaxies the segmenter finds in these
        images (e.g. from a star-count model of the field's latitude). The second look's
        probabilities are re-weighted from the mix it was trained on (70 % stars for the
        shipped looks) to this one by Bayes' rule
        (:func:`skysift.second_look.with_star_fraction`). None keeps the training mix. Needs
        ``second_look``.
    shreds : str or None
        Shipped shred classifier (``"shred"``) that gives each galaxy instance P(shred), the
        probability that it is a star-forming clump of a larger galaxy
        (:mod:`skysift.shreds`), from two views around its mask's centre and the PSF FWHM;
        the galaxy's score is multiplied by 1 - P(shred), so ``score_threshold`` drops the
        likely shreds, and P(shred) fills the catalog's ``p_shred``. None skips it.
    mask_refiner : str or None
        Shipped mask refiner (``"mask_refiner"``) that draws the label map's mask of every
        instance with a box of at most 40 px again, from a native-pixel stamp of the bands,
        the detector's masks and the PSF FWHM (:mod:`skysift.mask_refine`): the detector's
        boxes of faint galaxies come out about twice too large, and its masks fill them
        (docs/models.md, sessions 28 and 34). The second look, the shred classifier and the
        galaxy types still see the detector's masks. It sees the detections the detector
        scores 0.3 or more, so with it no detection above that is cut before the mask head.
        None keeps the detector's masks.
    colour_typer : str or None
        Shipped colour typer (``"colour_typer"``) that decides each instance's group (star,
        galaxy or false) and score last, from the chain's probabilities and the instance's
        aperture fluxes and colours in every band of the sky-subtracted image
        (:mod:`skysift.colour_typer`; docs/models.md, session 43). Needs ``second_look``.
        It types the instances the label map keeps under the chain's scores, as it learned;
        a detection painted over by a more confident one is dropped before it. None keeps
        the looks' decision, as does an image whose bands are named and are not the typer's
        (a warning says so, and the catalog's meta ``segmenter_colour_typer_skipped`` why).
    zero_points : tuple of float or None
        AB magnitude of one image unit in each band, for the colour typer: the bands are
        scaled to its training fields' zero points (its card's ``zero_points``) before the
        colours are measured. None takes each band's header ``MAGZP`` (or ``MAGZERO``) when
        every band has one (:attr:`skysift.image.Image.header_zero_points`), else assumes
        the image has the training fields' zero points; the catalog's meta
        ``segmenter_zero_points_from`` says which.
    """

    model: str = "segmenter"
    tile: int = 512
    margin: int = 64
    score_threshold: float = 0.5
    mask_threshold: float = 0.5
    large_mask_threshold: float | None = None
    large_mask_area: int = 600
    mask_box_scale: float = 1.0
    mask_box_side: float = 24.0
    augment: str | None = None
    batch_size: int = 4
    centroid_sigma: float = 1.5
    galaxy_types: str | None = "morphology"
    psf_fwhm: float | None = None
    second_look: str | tuple[str, ...] | None = None
    star_fraction: float | None = None
    shreds: str | None = None
    mask_refiner: str | None = None
    colour_typer: str | None = None
    zero_points: tuple[float, ...] | None = None

    @classmethod
    def recommended(cls, **overrides) -> SegmentConfig:
        """The chain that measured best on Burke et al.'s typical field (30 galaxies and 5
        stars per arcmin², g, r, z bands; docs/models.md, sessions 24-26, 30, 34, 38, 43 and
        48).

        ``segmenter_psf_typical`` with the mean of two star/galaxy looks at 27 % stars
        (``star_fraction``): ``second_look_reject`` on the detector's masks and
        ``second_look_reject_refined`` on the mask refiner's; then the ``shred`` classifier,
        the ``mask_refiner`` and, last, the ``colour_typer``, which decides each instance's
        group from all of theirs, its aperture colours and the ``stargalaxy`` classifier's
        call on a cutout of its pixels (docs/models.md, session 48). On 1,024 held-out
        typical fields its precision at 80 % recall at S/N >= 20 / 50 / 100 is 0.971 / 0.989
        / 0.984 for galaxies and 0.979 / 0.995 / 0.998 for stars; on Galaxy-Zoo-like cutouts
        it meets
        the Mask Galaxy paper's central-galaxy targets (their g, r, i bands leave the colour
        typer out, as any image whose named bands are not g, r, z does). It needs the PSF
        FWHM (``psf_fwhm``, else the header's ``SEEING``, else measured on the image), three
        bands, and for the colour typer the zero points of g, r, z if they are not DECaLS's
        (``zero_points``).

        Parameters
        ----------
        **overrides
            Any other :class:`SegmentConfig` option, e.g. ``star_fraction`` for a field of
            another mix, or ``psf_fwhm``.

        Returns
        -------
        SegmentConfig
        """
        chain = {
            "model": "segmenter_psf_typical",
            "second_look": ("second_look_reject", "second_look_reject_refined"),
            "star_fraction": 0.27,
            "shreds": "shred",
            "mask_refiner": "mask_refiner",
            "colour_typer": "colour_typer",
        }
        return cls(**(chain | overrides))

    def __post_init__(self) -> None:
        if self.psf_fwhm is not None and not (math.isfinite(self.psf_fwhm) and self.psf_fwhm > 0):
            raise InvalidParameterError(
                f"psf_fwhm must be a positive number of pixels, got {self.psf_fwhm}"
            )
        if not 0.0 <= self.score_threshold <= 1.0 or not 0.0 < self.mask_threshold < 1.0:
            raise InvalidParameterError(
                "score_threshold must be in [0, 1], mask_threshold in (0, 1)"
            )
        if self.large_mask_threshold is not None and not 0.0 < self.large_mask_threshold < 1.0:
            raise InvalidParameterError(
                f"large_mask_threshold must be in (0, 1), got {self.large_mask_threshold}"
            )
        if self.large_mask_area < 1:
            raise InvalidParameterError(
                f"large_mask_area must be >= 1 pixel, got {self.large_mask_area}"
            )
        if not 1.0 <= self.mask_box_scale <= 1.5:
            raise InvalidParameterError(
                f"mask_box_scale must be in [1, 1.5], got {self.mask_box_scale}"
            )
        if not self.mask_box_side >= 0:
            raise InvalidParameterError(
                f"mask_box_side must be >= 0 pixels, got {self.mask_box_side}"
            )
        check_augment(self.augment)
        if self.margin < 0 or self.batch_size < 1:
            raise InvalidParameterError("margin must be >= 0 and batch_size >= 1")
        if not self.centroid_sigma > 0:
            raise InvalidParameterError(
                f"centroid_sigma must be positive, got {self.centroid_sigma}"
            )
        if self.tile < 64 or self.tile % 32:
            raise InvalidParameterError(f"tile must be a multiple of 32 and >= 64, got {self.tile}")
        if isinstance(self.second_look, list | tuple):  # several looks (a list from YAML)
            names = tuple(self.second_look)
            if not names or not all(isinstance(name, str) and name for name in names):
                raise InvalidParameterError(
                    f"second_look must be a model name or a sequence of them, got {names}"
                )
            object.__setattr__(self, "second_look", names[0] if len(names) == 1 else names)
        if self.colour_typer is not None and self.second_look is None:
            raise InvalidParameterError(
                "colour_typer decides from the second look's probabilities; set second_look too"
            )
        if self.zero_points is not None:
            points = tuple(float(z) for z in self.zero_points)
            if not points or not all(math.isfinite(z) for z in points):
                raise InvalidParameterError(
                    "zero_points must be finite AB magnitudes, one per band; got "
                    f"{self.zero_points}"
                )
            object.__setattr__(self, "zero_points", points)
        if self.star_fraction is not None:
            if self.second_look is None:
                raise InvalidParameterError(
                    "star_fraction re-weights the second look's decision; set second_look too"
                )
            if not 0.0 < self.star_fraction < 1.0:
                raise InvalidParameterError(
                    "star_fraction must be in (0, 1) (stars among stars and galaxies), got "
                    f"{self.star_fraction}"
                )


@dataclass
class Instances:
    """Segmented instances of one image (full-image pixel coordinates).

    Attributes
    ----------
    labels : numpy.ndarray
        int32 ``(height, width)``: 1-based instance index owning each pixel, 0 elsewhere.
    classes : numpy.ndarray
        Class name per instance.
    scores : numpy.ndarray
        Detection score: the detector's class probability, or with a second look P(source) x
        P(group). Instances below ``score_threshold`` are dropped and the more confident
        instance owns contested pixels by it.
    class_scores : numpy.ndarray
        Confidence of the instance's class: its score times the galaxy-type network's
        probability of its type for a typed galaxy, else its score.
    bbox : numpy.ndarray
        ``(n, 4)`` int: xmin, xmax, ymin, ymax (inclusive) of the painted mask.
    area : numpy.ndarray
        Pixels owned in the label map.
    x, y : numpy.ndarray
        Windowed centroid (SExtractor's XWIN/YWIN, ``sep.winpos``) of the sky-subtracted light,
        started at the brightest smoothed pixel of the mask.
    x_mass, y_mass : numpy.ndarray
        Centre of mass of the sky-subtracted light inside the mask (the Mask Galaxy paper's
        centroid; noisier for large, faint masks).
    meta : dict
        For a model with a PSF channel, ``psf_fwhm_pixels`` and where it came from
        (``psf_fwhm_from``: ``"config"``, ``"header SEEING"`` or ``"measured"``).
    p_shred : numpy.ndarray or None
        P(shred) of each galaxy instance (NaN for stars) when a shred classifier ran
        (``SegmentConfig.shreds``), else None.
    p_star : numpy.ndarray or None
        P(star | source) of each instance from the chain's last star/galaxy call
        (:func:`star_probabilities`).
    """

    labels: np.ndarray
    classes: np.ndarray
    scores: np.ndarray
    class_scores: np.ndarray
    bbox: np.ndarray
    area: np.ndarray
    x: np.ndarray
    y: np.ndarray
    x_mass: np.ndarray
    y_mass: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    p_shred: np.ndarray | None = None
    p_star: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.scores.size)


class Segmenter:
    """The shipped Mask R-CNN segmenter, ready to segment images of any size.

    Parameters
    ----------
    config : SegmentConfig, optional
    module : torch.nn.Module, optional
        A model to use instead of the shipped one (training and tests); needs ``card``.
    card : dict, optional
        The model card of ``module``.
    """

    def __init__(self, config: SegmentConfig | None = None, *, module=None, card=None) -> None:
        from skysift.models.segmenter import SegmenterConfig

        self.config = config or SegmentConfig()
        if module is None:
            module, card = _load(self.config.model)
        elif card is None:
            raise InvalidParameterError("a module needs its model card")
        from skysift.models.runtime import tune_malloc

        tune_malloc()  # eager PyTorch: keeping freed memory mapped saves ~20 % here
        self.module = _inference_view(module.eval())
        self.card = card
        self.architecture = SegmenterConfig.from_dict(card["architecture"]["config"])
        if not self.architecture.masks:
            raise InvalidParameterError(
                f"model {card['name']!r} is the box-only Faster R-CNN variant: it draws no "
                "masks, so it cannot make a segmentation map; use a Mask R-CNN segmenter"
            )
        self.galaxy_typer = None
        if self.config.galaxy_types is not None:
            from skysift.morphology import GalaxyTyper

            self.galaxy_typer = GalaxyTyper(self.config.galaxy_types)
        #: the second looks whose probabilities are averaged (empty: the detector decides)
        self.second_looks = self._load_second_looks()
        self.shreds = None
        if self.config.shreds is not None:
            from skysift.shreds import ShredClassifier

            self.shreds = ShredClassifier(self.config.shreds)
            softening = float(card["normalization"]["softening"])
            if self.shreds.bands != self.architecture.in_channels or not math.isclose(
                self.shreds.softening, softening
            ):
                raise InvalidParameterError(
                    f"shred classifier {self.config.shreds!r} takes {self.shreds.bands} bands "
                    f"normalized with softening {self.shreds.softening:g}; the "
                    f"{card['name']!r} model gives {self.architecture.in_channels} with "
                    f"{softening:g}"
                )
        self.mask_refiner = None
        if self.config.mask_refiner is not None:
            from skysift.mask_refine import MaskRefiner

            self.mask_refiner = MaskRefiner(self.config.mask_refiner)
            if self.mask_refiner.bands != self.architecture.in_channels:
                raise InvalidParameterError(
                    f"mask refiner {self.config.mask_refiner!r} takes {self.mask_refiner.bands} "
                    f"bands; the {card['name']!r} model {self.architecture.in_channels}"
                )
        self.colour_typer = None
        if self.config.colour_typer is not None:
            from skysift.colour_typer import ColourTyper

            self.colour_typer = ColourTyper(self.config.colour_typer)
            if self.colour_typer.bands != self.architecture.in_channels:
                raise InvalidParameterError(
                    f"colour typer {self.config.colour_typer!r} takes {self.colour_typer.bands} "
                    f"bands; the {card['name']!r} model {self.architecture.in_channels}"
                )
            self.colour_typer.unit_scales(self.config.zero_points)  # one per band, or refused
        tile = self.config.tile
        if 2 * self.config.margin >= tile:
            raise InvalidParameterError(
                f"margin {self.config.margin} leaves no kept region in {tile}-pixel tiles"
            )
        transform = getattr(self.module, "transform", None)
        if transform is not None:  # torchvision's detector: run tiles at their own size
            transform.min_size = (tile,)
            transform.max_size = tile
            scale = (tile / self.architecture.image_size) ** 2
            heads = self.module.roi_heads
            heads.detections_per_img = int(self.architecture.detections_per_image * scale)
            # Drop before the mask head the detections that can never be kept; the mask
            # head otherwise draws and pastes a mask for each of ~200 per tile (2048^2 field:
            # docs/models.md, session 9). The galaxy types and the shred classifier only
            # lower a score, so that is every detection below the kept score; a second look
            # scores P(source) x P(group) <= P(star) + P(galaxy) <= twice the detector's
            # score, so with one it is every detection below half the kept score. Views to
            # fuse keep every detection: each adds its probabilities to the fused one's
            # (skysift.segment_augment). (torchvision keeps scores strictly above its
            # threshold; ours keeps them at it.)
            if self.config.augment is None:
                lowest = self.config.score_threshold
                if self.second_looks:
                    lowest /= 2
                if self._refiners():  # a refiner sees its neighbours from MIN_SCORE
                    from skysift.mask_refine import MIN_SCORE

                    lowest = min(lowest, MIN_SCORE)
                kept_from = math.nextafter(lowest, -math.inf)
                heads.score_thresh = max(float(heads.score_thresh), kept_from)

    def network_input(self, image: Image, *, psf_fwhm: float | None = None) -> np.ndarray:
        """``(channels, H, W)`` normalized input: the image's bands, or one band repeated,
        and the PSF channel if the model has one (``psf_fwhm`` in pixels, else that of
        :meth:`psf_fwhm`)."""
        bands = network_input(
            image,
            channels=self.architecture.in_channels,
            softening=self.card["normalization"]["softening"],
        )
        if not self.architecture.psf_channel:
            return bands
        from skysift.models.segmenter import with_psf_channel

        return with_psf_channel(bands, psf_fwhm or self.psf_fwhm(image)[0])

    def psf_fwhm(self, image: Image) -> tuple[float, str]:
        """The PSF FWHM (pixels) a model with a PSF channel gets, and where it came from.

        In this order: ``SegmentConfig(psf_fwhm=)``; the header's ``SEEING`` (arcsec) over the
        pixel scale; measured on the image's bright point sources
        (:func:`skysift.seeing.measure_psf_fwhm`, middle band) when it has at least
        :data:`PSF_MIN_SOURCES` of them. The model's star/galaxy decision moves with this
        number (5 % shifts it visibly; docs/models.md), so a measured value is logged.

        Raises
        ------
        PsfUnknownError
            None of the three is available.
        """
        if self.config.psf_fwhm is not None:
            return float(self.config.psf_fwhm), "config"
        if image.header_fwhm is not None:
            return image.header_fwhm, "header SEEING"
        from skysift.seeing import SEEING_RADIUS, measure_psf_fwhm

        measured = measure_psf_fwhm(image, min_sources=PSF_MIN_SOURCES)
        if np.isfinite(measured):
            log.warning(
                "segment: PSF FWHM %.2f px measured on the image (no psf_fwhm given, no "
                "SEEING in the header)",
                measured,
            )
            return measured, "measured"
        helpers = [
            name
            for name, used in (
                ("star/galaxy looks", self.config.second_look),
                ("shred classifier", self.config.shreds),
                ("mask refiner", self.config.mask_refiner),
            )
            if used
        ]
        raise PsfUnknownError(
            f"the segmenter {self.config.model!r}"
            + (f" and its {', '.join(helpers)}" if helpers else "")
            + " take the PSF FWHM as an input, and it could not be measured on this image "
            f"(fewer than {PSF_MIN_SOURCES} bright point sources, or a PSF wider than "
            f"{2 * SEEING_RADIUS:g} px): give SegmentConfig(psf_fwhm=<pixels>) (`skysift run "
            "--psf-fwhm`) or an image whose header has SEEING (arcsec) and a pixel scale"
        )

    def __call__(self, image: Image | np.ndarray, *, progress: bool = False) -> Instances:
        """Segment ``image``; returns its :class:`Instances`."""
        from skysift.image import as_image

        image = as_image(image)
        needs_psf = (
            self.architecture.psf_channel
            or bool(self.second_looks)
            or self.shreds is not None
            or self.mask_refiner is not None
        )
        psf = self.psf_fwhm(image) if needs_psf else None
        data = self.network_input(image, psf_fwhm=psf[0] if psf else None)
        photometry, skipped, zero_points = None, None, (None, None)
        if self.colour_typer is not None:
            skipped = self._colour_bands_skipped(image)
        if self.colour_typer is not None and skipped is None:
            from skysift.colour_typer import sky_subtracted

            photometry = sky_subtracted(np.asarray(image.data), np.asarray(image.mask))
            zero_points = self._zero_points(image)
        shreds_skipped = self._shreds_skipped(image) if self.shreds is not None else None
        found = self._tile_instances(
            data,
            psf_fwhm=psf[0] if psf else None,
            progress=progress,
            photometry=photometry,
            zero_points=zero_points[0],
            shreds=self.shreds if shreds_skipped is None else None,
        )
        found = on_pixels_with_data(found, np.asarray(image.mask))
        light = sky_subtracted_light(image, sources=source_pixels(found, data.shape[1:]))
        instances = _paint(found, light, data.shape[1:])
        instances.x, instances.y = instance_centroids(
            light,
            instances.labels,
            sigma=self.config.centroid_sigma,
            fallback=(instances.x_mass, instances.y_mass),
        )
        if psf is not None:
            instances.meta["psf_fwhm_pixels"], instances.meta["psf_fwhm_from"] = psf
        if skipped is not None:
            instances.meta["colour_typer_skipped"] = skipped
        if zero_points[1] is not None:
            instances.meta["zero_points_from"] = zero_points[1]
        if shreds_skipped is not None:
            instances.meta["shreds_skipped"] = shreds_skipped
        if self.shreds is None or shreds_skipped is not None:
            instances.p_shred = None
        return instances

    def _tile_instances(
        self,
        data: np.ndarray,
        *,
        psf_fwhm: float | None,
        progress: bool,
        photometry: tuple[np.ndarray, np.ndarray] | None = None,
        zero_points: tuple[float, ...] | None = None,
        shreds=None,
    ) -> list[dict[str, Any]]:
        import torch

        from skysift.morphology import retype_galaxies, type_new_galaxies
        from skysift.progress import progress_iter
        from skysift.second_look import relook
        from skysift.segment_augment import augmented_detector_outputs
        from skysift.shreds import unshred
        from skysift.tiling import tile_grid

        tile = self.config.tile
        height, width = data.shape[1:]
        tiles = tile_grid((height, width), tile=tile, margin=self.config.margin)
        batches = [
            tiles[i : i + self.config.batch_size]
            for i in range(0, len(tiles), self.config.batch_size)
        ]
        found: list[dict[str, Any]] = []
        classes = self.architecture.classes
        for batch in progress_iter(batches, "segmenting tiles", enabled=progress):
            inputs = []
            for t in batch:
                window = np.zeros((data.shape[0], tile, tile), dtype=np.float32)
                piece = data[:, t.rows, t.cols]
                window[:, : piece.shape[1], : piece.shape[2]] = piece
                inputs.append(torch.from_numpy(window))
            with torch.no_grad():
                outputs = augmented_detector_outputs(
                    self.module,
                    inputs,
                    augment=self.config.augment,
                    mask_box_scale=self.config.mask_box_scale,
                    mask_box_side=self.config.mask_box_side,
                )
            for t, window, out in zip(batch, inputs, outputs, strict=True):
                out = {key: value.numpy() for key, value in out.items()}
                bands = window.numpy()[: self.architecture.in_channels]  # no PSF channel
                # only the detections centred in the tile's own region can be kept, so only
                # they are looked at again and drawn again; every detection is still a
                # neighbour in the refiner's stamps
                detected = out
                centred = _centred_in(out["boxes"], t)
                out = _chosen_detections(out, centred)
                every_pixels = None
                if self.second_looks or shreds is not None:
                    # they see each mask before the score cut
                    every_pixels = _mask_pixels(
                        out["masks"],
                        out.get("mask_boxes", out["boxes"]),
                        (tile, tile),
                        self.config.mask_threshold,
                    )
                    out = out | {"detection_index": np.arange(len(out["scores"]))}
                drawn_by: list = []  # (refiner, its pixels) drawn in this tile
                if self.second_looks:
                    look_pixels = []
                    for look in self.second_looks:
                        redrawn = {}
                        if look.mask_refiner is not None:  # the masks it learned on
                            redrawn = self._tile_refined(
                                drawn_by,
                                detected,
                                centred,
                                bands,
                                psf_fwhm=psf_fwhm,
                                refiner=look.mask_refiner,
                            )
                        look_pixels.append(
                            [redrawn.get(k, drawn) for k, drawn in enumerate(every_pixels)]
                        )
                    out = relook(
                        out,
                        bands,
                        self.second_looks,
                        psf_fwhm=psf_fwhm,
                        classes=classes,
                        masks=look_pixels,
                        star_fraction=self.config.star_fraction,
                        neighbours=self._margin_pixels(detected, centred, tile),
                    )
                if shreds is not None:
                    out = unshred(
                        out,
                        bands,
                        shreds,
                        psf_fwhm=psf_fwhm,
                        classes=classes,
                        masks=every_pixels,
                    )
                if self.galaxy_typer is not None:
                    out = retype_galaxies(out, bands, self.galaxy_typer, classes=classes)
                refined = {}
                if self.mask_refiner is not None:
                    # the looks, the shreds and the types change no mask, box or raw score,
                    # so a look's refiner, if it is this one, drew these masks already
                    refined = self._tile_refined(
                        drawn_by,
                        detected,
                        centred,
                        bands,
                        psf_fwhm=psf_fwhm,
                        refiner=self.mask_refiner,
                    )
                # the cut and the paint order use the detection score (P(source) x P(group)
                # after a second look): how sure the source is, not how sure its galaxy type
                scores = np.asarray(out.get("detection_scores", out["scores"]))
                keep = scores >= self.config.score_threshold  # all centred in the tile's region
                pixels = self._final_pixels(out, np.flatnonzero(keep), every_pixels, refined)
                if photometry is not None:  # the colour typer reads this image's bands
                    from skysift.colour_typer import retype_by_colour

                    # it types what the label map keeps under the chain's scores, as it
                    # learned; a detection painted over by its twin is dropped here, so that
                    # it cannot come back with its twin's typed score
                    survives = painted_map(pixels, scores[keep], (tile, tile))[2]
                    pixels = [pixels[k] for k in np.flatnonzero(survives)]
                    keep[keep] = survives
                    typed = retype_by_colour(
                        out,
                        [refined.get(k, drawn) for k, drawn in enumerate(every_pixels)],
                        self.colour_typer,
                        image=photometry[0],
                        rms=photometry[1],
                        psf_fwhm=psf_fwhm,
                        classes=classes,
                        offset=(t.cols.start, t.rows.start),
                        zero_points=zero_points,
                        only=keep,
                    )
                    if self.galaxy_typer is not None:  # a type for each star made a galaxy
                        typed = type_new_galaxies(
                            typed, out, bands, self.galaxy_typer, classes=classes
                        )
                    out = typed
                    if shreds is not None:
                        out = self._shreds_of_new_groups(out, bands, every_pixels, psf_fwhm)
                    scores = np.asarray(out["detection_scores"])
                    above = scores[keep] >= self.config.score_threshold
                    pixels = [pixels[k] for k in np.flatnonzero(above)]
                    keep[keep] = above
                class_scores = np.asarray(out["scores"])
                labels = out["labels"][keep]
                p_shred = np.asarray(out.get("p_shred", np.full(len(scores), np.nan)))[keep]
                p_star = star_probabilities(out)[keep]
                for (rows, cols), label, score, class_score, shred, star in zip(
                    pixels,
                    labels,
                    scores[keep],
                    class_scores[keep],
                    p_shred,
                    p_star,
                    strict=True,
                ):
                    inside = (rows + t.rows.start < height) & (cols + t.cols.start < width)
                    if not inside.any():
                        continue
                    found.append(
                        {
                            "rows": rows[inside] + t.rows.start,
                            "cols": cols[inside] + t.cols.start,
                            "class": classes[int(label) - 1],
                            "score": float(score),
                            "class_score": float(class_score),
                            "p_shred": float(shred),
                            "p_star": float(star),
                        }
                    )
        return found

    def _final_pixels(
        self, out: dict[str, Any], rows: np.ndarray, every_pixels: list | None, refined: dict
    ) -> list:
        """The masks the label map paints for the detections ``rows`` of a tile's ``out``:
        the refiner's where it drew one, else the detector's (large ones at
        ``large_mask_threshold``)."""
        tile = self.config.tile
        mask_boxes = out.get("mask_boxes", out["boxes"])  # the box each mask is drawn in
        if every_pixels is None:
            pixels = _mask_pixels(
                out["masks"][rows], mask_boxes[rows], (tile, tile), self.config.mask_threshold
            )
        else:
            pixels = [every_pixels[i] for i in out["detection_index"][rows]]
        pixels = self._large_masks_redrawn(
            pixels, out["masks"][rows], mask_boxes[rows], (tile, tile)
        )
        return [refined.get(int(k), drawn) for k, drawn in zip(rows, pixels, strict=True)]

    def _colour_bands_skipped(self, image: Image) -> str | None:
        """Why the colour typer is left out on ``image`` (it has another number of bands, or
        its bands are named and are not those the typer learned colours in; a warning says
        so), or None to run it."""
        if image.n_bands != self.colour_typer.bands:
            reason = (
                f"the image has {image.n_bands} band(s) ({', '.join(image.bands)}); the typer "
                f"reads the colours of {self.colour_typer.bands} bands"
            )
            log.warning(
                "segment: colour typer %r left out: %s; the looks' star/galaxy call stands",
                self.colour_typer.card["name"],
                reason,
            )
            return reason
        trained = self.colour_typer.other_bands(image.bands)
        if trained is None:
            return None
        reason = f"image bands {', '.join(image.bands)}, typer's {', '.join(trained)}"
        log.warning(
            "segment: colour typer %r left out: it learned the colours of bands %s and this "
            "image's bands are %s; the looks' star/galaxy call stands",
            self.colour_typer.card["name"],
            ", ".join(trained),
            ", ".join(image.bands),
        )
        return reason

    def _zero_points(self, image: Image) -> tuple[tuple[float, ...] | None, str]:
        """The zero points the colour typer scales ``image``'s bands by, and where they came
        from: ``SegmentConfig(zero_points=)``, else each band's header
        (:attr:`Image.header_zero_points`), else none (the image is taken to have the
        typer's training zero points)."""
        if self.config.zero_points is not None:
            return self.config.zero_points, "config"
        found = image.header_zero_points
        if found is None:
            return None, "the typer's training fields (none given, none in the headers)"
        self.colour_typer.unit_scales(found)  # one per band, or refused
        return found, "headers (MAGZP or MAGZERO)"

    def _shreds_skipped(self, image: Image) -> str | None:
        """Why the shred classifier is left out on ``image`` (a single band, which the
        detector reads repeated, holds none of the colours the classifier learned), or None
        to run it."""
        if image.n_bands == self.shreds.bands:
            return None
        reason = (
            f"the image has {image.n_bands} band(s) ({', '.join(image.bands)}); the shred "
            f"classifier reads {self.shreds.bands} bands"
        )
        log.warning(
            "segment: shred classifier %r left out: %s; no galaxy is scored as a shred",
            self.shreds.card["name"],
            reason,
        )
        return reason

    def _shreds_of_new_groups(
        self, out: dict[str, Any], bands: np.ndarray, pixels: list, psf_fwhm: float
    ) -> dict[str, Any]:
        """``out`` with P(shred) for the galaxies only, as the catalog holds it, after the
        colour typer: measured for each galaxy it made from a star (which the shred
        classifier, seeing a star, left NaN), NaN for each star it made from a galaxy; the
        scores stay the typer's."""
        from skysift.shreds import mask_centre_p_shred

        is_star = np.asarray(out["labels"]) == self.architecture.classes.index("star") + 1
        p_shred = np.array(out.get("p_shred", np.full(is_star.size, np.nan)), float)
        p_shred[is_star] = np.nan
        new = np.flatnonzero(
            ~is_star & np.isnan(p_shred) & np.array([len(r) > 0 for r, _ in pixels], dtype=bool)
        )
        if new.size:
            p_shred[new] = mask_centre_p_shred(
                bands, [pixels[k] for k in new], self.shreds, psf_fwhm=psf_fwhm
            )
        return out | {"p_shred": p_shred}

    def _load_second_looks(self) -> tuple:
        """The :class:`~skysift.second_look.SecondLook` of each name in ``second_look``, each
        checked (bands, star fraction, its mask refiner) before any tile."""
        from skysift.second_look import SecondLook, require_same_classes

        names = self.config.second_look
        if names is None:
            return ()
        card, channels = self.card, self.architecture.in_channels
        looks = tuple(SecondLook(name) for name in ((names,) if isinstance(names, str) else names))
        for look in looks:
            name = look.card["name"]
            if look.bands != channels:
                raise InvalidParameterError(
                    f"second look {name!r} takes {look.bands} bands; the {card['name']!r} "
                    f"model {channels}"
                )
            if self.config.star_fraction is not None:
                look.require_trained_star_fraction()
            look_refiner = look.mask_refiner  # loaded (and its sha256 checked)
            if look_refiner is not None and look_refiner.bands != channels:
                raise InvalidParameterError(
                    f"second look {name!r} sees the masks of mask refiner "
                    f"{look.mask_refiner_name!r}, which takes {look_refiner.bands} bands; the "
                    f"{card['name']!r} model {channels}"
                )
            learned_from = look.card.get("segmenter", {}).get("name")
            # a detector fine-tuned from the look's own (segmenter_psf_typical) was measured
            # with it: docs/models.md, session 26
            parent = card.get("training", {}).get("initialized_from", {}).get("name")
            if learned_from not in (None, card["name"], parent):
                log.warning(
                    "segment: second look %r learned the mistakes of %r, not of %r; its "
                    "figures in docs/models.md do not hold for this pairing",
                    name,
                    learned_from,
                    card["name"],
                )
        require_same_classes(looks)
        return looks

    def _refiners(self) -> list:
        """The mask refiners this segmenter runs: the label map's and the second looks'."""
        looks = [look.mask_refiner for look in self.second_looks]
        return [r for r in (self.mask_refiner, *looks) if r is not None]

    def _margin_pixels(self, detected: dict[str, Any], centred: np.ndarray, tile: int) -> list:
        """Masks of a tile's detections outside its own region (the detector's, at
        ``mask_threshold``): neighbours of the instances a look with the neighbours'
        channel decides; none are drawn for looks without it."""
        if not any(look.neighbours for look in self.second_looks) or centred.all():
            return []
        margin = ~centred
        return _mask_pixels(
            np.asarray(detected["masks"])[margin],
            np.asarray(detected.get("mask_boxes", detected["boxes"]))[margin],
            (tile, tile),
            self.config.mask_threshold,
        )

    def _tile_refined(self, drawn_by: list, detected, chosen, bands, *, psf_fwhm, refiner) -> dict:
        """:meth:`_refined_pixels` of one tile, drawn once per refiner: ``drawn_by`` holds
        the tile's ``(refiner, pixels)`` so far and gains this one's."""
        for known, pixels in drawn_by:
            if _same_model(known, refiner):
                return pixels
        pixels = self._refined_pixels(detected, chosen, bands, psf_fwhm=psf_fwhm, refiner=refiner)
        drawn_by.append((refiner, pixels))
        return pixels

    def _refined_pixels(
        self, detected: dict[str, Any], chosen: np.ndarray, bands: np.ndarray, *, psf_fwhm, refiner
    ) -> dict:
        """``{index among the chosen detections: (rows, cols)}`` of the masks ``refiner``
        draws again in one tile (:func:`skysift.mask_refine.redrawn_stamps`), at
        ``mask_threshold``: of the ``chosen`` (bool) of all the tile's ``detected``, which
        are all neighbours in its stamps."""
        from skysift.mask_refine import raw_scores, redrawn_stamps

        shape = tuple(bands.shape[1:])
        mask_boxes = np.asarray(detected.get("mask_boxes", detected["boxes"]))
        redrawn = redrawn_stamps(
            bands,
            _mask_pieces(np.asarray(detected["masks"]), mask_boxes, shape),
            detected["boxes"],
            raw_scores(detected),
            refiner,
            psf_fwhm=psf_fwhm,
            only=chosen,
        )
        position = np.cumsum(chosen) - 1  # a detection's index among the chosen
        refined = {}
        for index, (row, col, probability) in redrawn.items():
            k = int(position[index])
            rows, cols = np.nonzero(probability >= self.config.mask_threshold)
            rows, cols = rows + row, cols + col
            inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
            refined[k] = (rows[inside], cols[inside])
        return refined

    def _large_masks_redrawn(self, pixels: list, masks, boxes, shape) -> list:
        """``pixels`` with each instance of ``large_mask_area`` pixels or more drawn again at
        ``large_mask_threshold`` (the label map's masks; see :class:`SegmentConfig`)."""
        low = self.config.large_mask_threshold
        if low is None:
            return pixels
        large = [
            k for k, (rows, _) in enumerate(pixels) if rows.size >= self.config.large_mask_area
        ]
        if not large:
            return pixels
        redrawn = _mask_pixels(np.asarray(masks)[large], np.asarray(boxes)[large], shape, low)
        out = list(pixels)
        for k, drawn in zip(large, redrawn, strict=True):
            out[k] = drawn
        return out


def _centred_in(boxes: np.ndarray, tile) -> np.ndarray:
    """``(n,)`` bool: whether each box's centre lies in the region ``tile`` keeps."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
    return (
        (centre_x >= tile.keep_cols.start)
        & (centre_x < tile.keep_cols.stop)
        & (centre_y >= tile.keep_rows.start)
        & (centre_y < tile.keep_rows.stop)
    )


def _chosen_detections(out: dict[str, Any], chosen: np.ndarray) -> dict[str, Any]:
    """The detections of one tile's ``out`` (per-detection arrays) that ``chosen`` marks."""
    n = chosen.size
    return {
        key: value[chosen] if getattr(value, "shape", ())[:1] == (n,) else value
        for key, value in out.items()
    }


def _same_model(first, second) -> bool:
    """Whether two loaded models (``card`` with ``sha256``) are the same weights."""
    if first is None or second is None:
        return False
    if first is second:
        return True
    digest = first.card.get("sha256")
    return digest is not None and digest == second.card.get("sha256")


def detector_outputs(
    module, inputs: list, *, mask_box_scale: float = 1.0, mask_box_side: float = 24.0
) -> list[dict[str, Any]]:
    """The detector's eval-mode outputs for a batch of tiles, masks left unpasted if it can.

    A torchvision Mask R-CNN pastes every mask into an image of the whole tile; for ~100
    instances per tile that costs more than the network. Its parts are therefore run here as
    its own ``forward`` runs them, except that the masks stay ``(n, 1, M, M)`` probabilities
    in their box (the tiles are never resized, so boxes need no rescaling);
    :func:`_mask_pixels` pastes each one into its box only. Any other module (a stand-in) is
    called as it is and returns whole-tile masks.

    With ``mask_box_scale`` above 1, the mask of each detection whose box is
    ``mask_box_side`` pixels or more on its longer side is drawn again in its box enlarged
    that many times about its centre (:func:`_masks_in_grown_boxes`); ``"mask_boxes"`` then
    holds the box each mask belongs to.
    """
    parts = ("transform", "backbone", "rpn", "roi_heads")
    if not all(hasattr(module, name) for name in parts):
        return module(inputs)
    images, _ = module.transform(inputs)
    if images.image_sizes != [tuple(i.shape[-2:]) for i in inputs]:
        raise RuntimeError("the detector resized its input tiles; masks would not line up")
    features = module.backbone(images.tensors)
    proposals, _ = module.rpn(images, features)
    detections, _ = module.roi_heads(features, proposals, images.image_sizes)
    if mask_box_scale != 1.0 and getattr(module.roi_heads, "has_mask", lambda: False)():
        detections = _masks_in_grown_boxes(
            module.roi_heads,
            features,
            detections,
            images.image_sizes,
            scale=mask_box_scale,
            min_side=mask_box_side,
        )
    return detections


def grown_boxes(boxes, *, scale: float, min_side: float):
    """``(n, 4)`` xyxy ``boxes`` (torch) with each one whose longer side is ``min_side`` or
    more enlarged ``scale`` times about its centre, and which ones were."""
    import torch

    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    grown = torch.maximum(width, height) >= min_side
    centre_x, centre_y = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    half_width, half_height = scale * width / 2, scale * height / 2
    enlarged = torch.stack(
        [
            centre_x - half_width,
            centre_y - half_height,
            centre_x + half_width,
            centre_y + half_height,
        ],
        dim=1,
    )
    return torch.where(grown[:, None], enlarged, boxes), grown


def _masks_in_grown_boxes(heads, features, detections, image_sizes, *, scale, min_side):
    """``detections`` with the masks of their large boxes drawn again by the mask head in
    boxes ``scale`` times larger (:func:`grown_boxes`), and ``"mask_boxes"`` added.

    The box regression stops short of a large galaxy's faint wings, and the mask head draws
    inside the box it is given, so its mask cannot reach them; it was trained on proposals
    that overlap their source's box with IoU >= 0.5, so a box up to ~1.4 times larger is one
    it knows how to draw in (docs/models.md, session 25).
    """
    from torchvision.models.detection.roi_heads import maskrcnn_inference

    out = [dict(d) for d in detections]
    grown = [grown_boxes(d["boxes"], scale=scale, min_side=min_side) for d in detections]
    for d, (boxes, _) in zip(out, grown, strict=True):
        d["mask_boxes"] = boxes
    if not any(bool(large.any()) for _, large in grown):
        return out
    pooled = heads.mask_roi_pool(features, [boxes[large] for boxes, large in grown], image_sizes)
    logits = heads.mask_predictor(heads.mask_head(pooled))
    redrawn = maskrcnn_inference(
        logits, [d["labels"][large] for d, (_, large) in zip(detections, grown, strict=True)]
    )
    for d, (_, large), masks in zip(out, grown, redrawn, strict=True):
        d["masks"] = d["masks"].clone()
        d["masks"][large] = masks
    return out


def _mask_pixels(
    masks: np.ndarray, boxes: np.ndarray, shape: tuple[int, int], threshold: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(rows, cols)`` at or above ``threshold`` of each instance's mask, in tile pixels.

    ``masks`` are whole-tile ``(n, 1, H, W)`` probabilities, or the mask head's ``(n, 1, M,
    M)`` ones inside ``boxes``; those are pasted exactly as torchvision's
    ``paste_masks_in_image`` does (padded by one cell, box enlarged to match, bilinear
    resampling to the integer box, clipped to the tile), but into the box alone.
    """
    if masks.shape[0] == 0:
        return []
    if masks.shape[-2:] == shape:
        return [tuple(np.nonzero(mask[0] >= threshold)) for mask in masks]
    out = []
    for top, left, values in _mask_pieces(masks, boxes, shape):
        rows, cols = np.nonzero(values >= threshold)
        out.append((rows + top, cols + left))
    return out


def _mask_pieces(
    masks: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]
) -> list[tuple[int, int, np.ndarray]]:
    """The mask head's ``(n, 1, M, M)`` probabilities pasted into their ``boxes`` as
    :func:`_mask_pixels` pastes them: ``(top row, left column, probabilities)`` of each box,
    clipped to the tile (zero outside). Whole-tile masks give the rectangle of their
    non-zero pixels."""
    import torch
    from torch.nn import functional
    from torchvision.models.detection.roi_heads import expand_boxes, expand_masks

    from skysift.mask_refine import whole_image_pieces

    if masks.shape[0] == 0:
        return []
    if masks.shape[-2:] == shape:
        return whole_image_pieces(masks)
    padded, scale = expand_masks(torch.from_numpy(masks), padding=1)
    grown = expand_boxes(torch.from_numpy(boxes), scale).to(dtype=torch.int64).tolist()
    height, width = shape
    out = []
    for mask, (x0, y0, x1, y1) in zip(padded, grown, strict=True):
        size = (max(y1 - y0 + 1, 1), max(x1 - x0 + 1, 1))
        local = functional.interpolate(
            mask[0].expand((1, 1, -1, -1)), size=size, mode="bilinear", align_corners=False
        )[0, 0]
        top, left = max(y0, 0), max(x0, 0)
        bottom, right = max(min(y1 + 1, height), top), max(min(x1 + 1, width), left)
        out.append((top, left, local[top - y0 : bottom - y0, left - x0 : right - x0].numpy()))
    return out


def _inference_view(module):
    """``module`` with its own inference settings (tile size, detection limits).

    The weights are shared; the detector's transform, RPN and RoI heads are shallow copies, so
    setting them here changes neither the caller's module nor the cached shipped one, which
    other segmenters with other options may be using.
    """
    import copy

    if not hasattr(module, "_modules"):  # not a torch module: nothing to configure
        return module
    view = copy.copy(module)
    view._modules = dict(module._modules)
    for name in ("transform", "rpn", "roi_heads"):
        if name in view._modules:
            view._modules[name] = copy.copy(view._modules[name])
    return view


def network_input(image: Image, *, channels: int, softening: float) -> np.ndarray:
    """What an R-CNN of skysift sees: ``(channels, H, W)`` normalized bands.

    Each band is normalized on its own (:func:`skysift.normalization.normalize` with the
    image's robust level and scale), masked and non-finite pixels set to 0; a single band is
    repeated into every channel.
    """
    from skysift.normalization import normalize, robust_level_scale

    if image.n_bands not in (1, channels):
        raise InvalidParameterError(
            f"the segmenter takes {channels} bands or 1 band (repeated); "
            f"the image has {image.n_bands} ({', '.join(image.bands)})"
        )
    planes = []
    for band in np.asarray(image.data):
        level, scale = robust_level_scale(band, image.mask)
        plane = normalize(band, level, scale, softening)
        plane[image.mask | ~np.isfinite(plane)] = 0.0
        planes.append(plane)
    stack = np.stack(planes)
    return np.repeat(stack, channels, axis=0) if len(planes) == 1 else stack


def sky_subtracted_light(image: Image, *, sources: np.ndarray | None = None) -> np.ndarray:
    """Sum over bands of each band minus its sky: the light instance centroids are measured on.

    Each band first loses the offsets of its amplifier sections
    (:func:`skysift.amplifiers.remove_amplifier_offsets`), then SEP's 64-pixel mesh
    background; masked pixels are 0. ``sources`` (True on source pixels, e.g. the instances'
    masks) is left out of both estimates. Without the sky removed a centre of mass is pulled
    towards the middle of its mask; a mesh alone smooths an amplifier step into a ramp that
    pulls a windowed centroid on the boundary towards the brighter side (0.29 px in the median
    for the simulated SDSS central galaxies, 0.02 px with the steps removed)."""
    import sep
    from scipy import ndimage

    from skysift.amplifiers import remove_amplifier_offsets

    mask = np.array(image.mask, dtype=bool, order="C")
    ignore = mask.copy()
    if sources is not None:
        if np.shape(sources) != mask.shape:
            raise InvalidParameterError(
                f"sources mask shape {np.shape(sources)} does not match the image's {mask.shape}"
            )
        ignore |= ndimage.binary_dilation(np.asarray(sources, dtype=bool), iterations=2)
    light = np.zeros(image.shape, dtype=np.float32)
    for band in np.asarray(image.data):
        bad = mask | ~np.isfinite(band)
        plane = remove_amplifier_offsets(band, mask=ignore | bad)
        plane[bad] = 0.0
        sep.Background(plane, mask=ignore | bad, bw=64, bh=64).subfrom(plane)
        plane[bad] = 0.0
        light += plane
    return light


def on_pixels_with_data(found: list[dict[str, Any]], masked: np.ndarray) -> list[dict[str, Any]]:
    """Each instance with its masked pixels (non-finite, or flagged by the image's mask)
    taken out: a source's footprint holds only pixels with data, as SExtractor's does where
    the weight is zero. The network reads masked pixels as zero, so a mask drawn at an edge
    of the data can reach past it; an instance left without pixels is dropped when the map
    is painted."""
    if not masked.any():
        return found
    out = []
    for instance in found:
        keep = ~masked[instance["rows"], instance["cols"]]
        out.append(instance | {"rows": instance["rows"][keep], "cols": instance["cols"][keep]})
    return out


def source_pixels(found: list[dict[str, Any]], shape: tuple[int, int]) -> np.ndarray:
    """Boolean image, True on the pixels of any instance in ``found``."""
    pixels = np.zeros(shape, dtype=bool)
    for instance in found:
        pixels[instance["rows"], instance["cols"]] = True
    return pixels


def instance_centroids(
    light: np.ndarray, labels: np.ndarray, *, sigma: float, fallback: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Windowed centroids (SExtractor's XWIN/YWIN via ``sep.winpos``, Gaussian ``sigma``) of
    instances ``1..n`` of a label map, each started at its brightest smoothed pixel.

    ``fallback`` (x, y) per instance (e.g. the centre of mass) is used where the window fails
    or wanders more than ``3 sigma`` from its start.
    """
    import sep
    from scipy import ndimage

    n = len(fallback[0])
    if n == 0:
        return fallback[0].copy(), fallback[1].copy()
    smooth = ndimage.gaussian_filter(light, sigma)
    index = np.arange(1, n + 1)
    peaks = ndimage.maximum_position(smooth, labels, index)
    y0 = np.array([p[0] for p in peaks], dtype=np.float64)
    x0 = np.array([p[1] for p in peaks], dtype=np.float64)
    xw, yw, flag = sep.winpos(np.ascontiguousarray(light), x0, y0, np.full(n, sigma))
    ok = (flag == 0) & np.isfinite(xw) & np.isfinite(yw) & (np.hypot(xw - x0, yw - y0) < 3 * sigma)
    return np.where(ok, xw, fallback[0]), np.where(ok, yw, fallback[1])


def painted_map(
    pixels: list, scores, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A label map painted from instances' masks, and which instances it keeps.

    Parameters
    ----------
    pixels : list of (rows, cols)
        Each instance's mask pixels.
    scores : array_like
        The paint order: ascending (stable), so the most confident instance paints last and
        owns contested pixels.
    shape : (int, int)
        The map's shape.

    Returns
    -------
    labels : numpy.ndarray
        ``shape`` int32 map; instance ``k`` is ``k + 1``, 0 is no instance.
    area : numpy.ndarray
        Pixels each instance owns.
    survives : numpy.ndarray of bool
        True for an instance left with pixels and at least :data:`MIN_KEPT_FRACTION` of its
        own mask; the others are fragments or second hypotheses of a more confident one.
    """
    n = len(pixels)
    labels = np.zeros(shape, dtype=np.int32)
    for k in np.argsort(np.asarray(scores, dtype=float), kind="stable"):
        labels[pixels[k][0], pixels[k][1]] = k + 1
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    own = np.array([np.size(rows) for rows, _ in pixels], dtype=np.int64)
    return labels, area, (area > 0) & (area >= MIN_KEPT_FRACTION * own)


def _paint(found: list[dict[str, Any]], light: np.ndarray, shape: tuple[int, int]) -> Instances:
    from scipy import ndimage

    from skysift.evaluate.segmentation import mask_centroid

    n = len(found)
    labels, area, alive = painted_map(
        [(f["rows"], f["cols"]) for f in found], [f["score"] for f in found], shape
    )
    slices = ndimage.find_objects(labels, max_label=n)
    bbox = np.full((n, 4), -1, dtype=np.int64)
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    for k, found_slice in enumerate(slices):
        if found_slice is None:
            continue
        rows, cols = found_slice
        bbox[k] = (cols.start, cols.stop - 1, rows.start, rows.stop - 1)
        x[k], y[k] = mask_centroid(light[found_slice], labels[found_slice] == k + 1)
        x[k] += cols.start
        y[k] += rows.start
    remap = np.zeros(n + 1, dtype=np.int32)
    remap[1:][alive] = np.arange(1, int(alive.sum()) + 1)
    return Instances(
        labels=remap[labels],
        classes=np.array([f["class"] for f in found], dtype="U10")[alive]
        if n
        else np.zeros(0, "U10"),
        scores=np.array([f["score"] for f in found], dtype=np.float32)[alive]
        if n
        else np.zeros(0, np.float32),
        class_scores=np.array([f["class_score"] for f in found], dtype=np.float32)[alive]
        if n
        else np.zeros(0, np.float32),
        bbox=bbox[alive],
        area=area[alive].astype(np.int64),
        x=x[alive],
        y=y[alive],
        x_mass=x[alive],
        y_mass=y[alive],
        p_shred=np.array([f.get("p_shred", np.nan) for f in found], dtype=np.float32)[alive]
        if n
        else np.zeros(0, np.float32),
        p_star=np.array([f.get("p_star", np.nan) for f in found], dtype=np.float32)[alive]
        if n
        else np.zeros(0, np.float32),
    )


@functools.cache
def _load(name: str):
    from skysift.models.registry import load_model

    return load_model(name)


def segment(
    image: Image | np.ndarray,
    catalog=None,
    *,
    config: SegmentConfig | None = None,
    segmenter: Segmenter | None = None,
    progress: bool = False,
):
    """Segment ``image`` and attach the instances to a catalog.

    Parameters
    ----------
    image : Image or array
    catalog : astropy.table.QTable, optional
        Localized sources (skysift schema). Each instance takes the id of the brightest source
        inside its mask; instances without one become new rows flagged
        ``unmatched_instance``. Without a catalog, one row per instance.
    config : SegmentConfig, optional
        Default ``SegmentConfig()``: the ``segmenter`` network alone. The pipeline's segment
        stage runs :meth:`SegmentConfig.recommended`, the chain that measured best.
    segmenter : Segmenter, optional
        A ready segmenter (reused across images).
    progress : bool

    Returns
    -------
    catalog : astropy.table.QTable
        A copy with ``morphology``, ``morphology_score``, ``bbox_*``, ``area`` and the
        instance's own windowed centroid ``x_segment``, ``y_segment`` filled (``x``, ``y`` stay
        the localizer's).
    segmentation : numpy.ndarray
        int32 label map whose labels are the catalog's ids.
    """
    from skysift.catalog import empty_catalog, make_catalog
    from skysift.image import as_image

    image = as_image(image)
    segmenter = segmenter or Segmenter(config)
    instances = segmenter(image, progress=progress)
    if not len(instances):
        warnings.warn("segmenter: no sources segmented", EmptyCatalogWarning, stacklevel=2)
    if catalog is None:
        catalog = empty_catalog(with_sky=image.wcs is not None)
    out = catalog.copy()
    ids = np.asarray(out["id"], dtype=np.int64) if len(out) else np.zeros(0, np.int64)
    owner = _owners(instances, out)
    new = np.flatnonzero(owner < 0)
    if new.size:
        first = int(ids.max(initial=0)) + 1
        values: dict[str, Any] = {
            "id": np.arange(first, first + new.size),
            "x": instances.x[new],
            "y": instances.y[new],
            "x_peak": np.rint(instances.x[new]).astype(np.int64),
            "y_peak": np.rint(instances.y[new]).astype(np.int64),
            "score": instances.scores[new],
            "flags": np.full(new.size, FLAGS["unmatched_instance"], dtype=np.int32),
        }
        if image.wcs is not None:
            sky = image.wcs.pixel_to_world(values["x"], values["y"])
            values["ra"], values["dec"] = sky.ra.deg, sky.dec.deg
        added = make_catalog(values, meta=dict(out.meta))
        out = _stack(out, added)
        owner[new] = len(out) - new.size + np.arange(new.size)
    rows = owner
    truncated = truncated_footprints(instances.labels, np.asarray(image.mask))
    blended = touching_footprints(instances.labels)
    out["flags"][rows] = (
        np.asarray(out["flags"])[rows]
        | np.where(truncated, FLAGS["truncated_footprint"], 0)
        | np.where(blended, FLAGS["blended"], 0)
    )
    out["morphology"][rows] = instances.classes
    if instances.p_star is not None:
        out["p_star_segment"][rows] = instances.p_star
    out["morphology_score"][rows] = instances.class_scores
    out["bbox_xmin"][rows] = instances.bbox[:, 0]
    out["bbox_xmax"][rows] = instances.bbox[:, 1]
    out["bbox_ymin"][rows] = instances.bbox[:, 2]
    out["bbox_ymax"][rows] = instances.bbox[:, 3]
    out["area"][rows] = instances.area
    if instances.p_shred is not None:  # galaxies only: a star keeps what it had
        galaxy = np.isfinite(instances.p_shred)
        out["p_shred"][rows[galaxy]] = instances.p_shred[galaxy]
    out["x_segment"][rows] = instances.x * out["x_segment"].unit
    out["y_segment"][rows] = instances.y * out["y_segment"].unit
    lookup = np.zeros(len(instances) + 1, dtype=np.int32)
    lookup[1:] = np.asarray(out["id"])[rows]
    out.meta["segmenter"] = segmenter.card["name"]
    if segmenter.second_looks:
        out.meta["segmenter_second_look"] = "+".join(
            look.card["name"] for look in segmenter.second_looks
        )
    if "shreds_skipped" in instances.meta:
        out.meta["segmenter_shreds_skipped"] = instances.meta["shreds_skipped"]
    elif segmenter.shreds is not None:
        out.meta["segmenter_shreds"] = segmenter.shreds.card["name"]
    if segmenter.mask_refiner is not None:
        out.meta["segmenter_mask_refiner"] = segmenter.mask_refiner.card["name"]
    if "colour_typer_skipped" in instances.meta:
        out.meta["segmenter_colour_typer_skipped"] = instances.meta["colour_typer_skipped"]
    elif segmenter.colour_typer is not None:
        out.meta["segmenter_colour_typer"] = segmenter.colour_typer.card["name"]
    for key in ("psf_fwhm_pixels", "psf_fwhm_from", "zero_points_from"):
        if key in instances.meta:
            out.meta[f"segmenter_{key}"] = instances.meta[key]
    segmentation = lookup[instances.labels]
    inside = inside_other_footprints(out, segmentation)
    out["flags"] = np.asarray(out["flags"]) | np.where(inside, FLAGS["blended"], 0)
    return out, segmentation


def inside_other_footprints(catalog, segmentation: np.ndarray) -> np.ndarray:
    """For each catalog row, whether its position lies in another source's footprint (a
    localizer peak inside a segmented galaxy: a clump of it, or a star on it), which the
    catalog flags ``blended``."""
    if not len(catalog):
        return np.zeros(0, dtype=bool)
    height, width = segmentation.shape
    x = np.asarray(getattr(catalog["x"], "value", catalog["x"]), dtype=float)
    y = np.asarray(getattr(catalog["y"], "value", catalog["y"]), dtype=float)
    on = np.isfinite(x) & np.isfinite(y)
    cols = np.clip(np.rint(np.where(on, x, 0)), 0, width - 1).astype(np.int64)
    rows = np.clip(np.rint(np.where(on, y, 0)), 0, height - 1).astype(np.int64)
    under = segmentation[rows, cols]
    return on & (under > 0) & (under != np.asarray(catalog["id"]))


def star_probabilities(prediction: dict[str, Any]) -> np.ndarray:
    """Each detection's probability of being a star, given that it is a source, from the
    chain's last star/galaxy call: the colour typer's where it typed it, else the looks'
    where they decided, else the Mask R-CNN heads'. The looks' and the typer's classes
    include "false"; it is divided out, P(star) / (1 - P(false))."""
    n = len(np.asarray(prediction["labels"]))
    p = np.full(n, np.nan)
    if "p_star" in prediction and "p_galaxy" in prediction:
        star = np.asarray(prediction["p_star"], dtype=float)
        total = star + np.asarray(prediction["p_galaxy"], dtype=float)
        p = np.where(total > 0, star / np.where(total > 0, total, 1.0), np.nan)
    for star_key, false_key in (
        ("p_star_second_look", "p_false_second_look"),
        ("p_star_colour", "p_false_colour"),
    ):
        if star_key not in prediction:
            continue
        star = np.asarray(prediction[star_key], dtype=float)
        false = np.asarray(prediction.get(false_key, np.zeros(n)), dtype=float)
        source = 1.0 - np.nan_to_num(false)
        decided = np.isfinite(star) & (source > 0)
        p = np.where(decided, star / np.where(decided, source, 1.0), p)
    return np.clip(p, 0.0, 1.0)


def truncated_footprints(labels: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """For each instance of a label map (label ``k + 1`` is instance ``k``), whether its
    footprint touches the image's edge or a masked pixel: its area and light stop there, so
    the catalog flags it ``truncated_footprint``."""
    from scipy import ndimage

    n = int(labels.max(initial=0))
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touching = [edge]
    if masked.any():
        touching.append(labels[ndimage.binary_dilation(masked)])
    hit = np.zeros(n + 1, dtype=bool)
    hit[np.concatenate(touching)] = True
    return hit[1:]


def touching_footprints(labels: np.ndarray) -> np.ndarray:
    """For each instance of a label map (label ``k + 1`` is instance ``k``), whether its
    footprint touches another's (side or corner): the two were deblended, and their areas
    and light were divided where they meet, so the catalog flags both ``blended``."""
    n = int(labels.max(initial=0))
    hit = np.zeros(n + 1, dtype=bool)
    for a, b in (
        (labels[:, :-1], labels[:, 1:]),
        (labels[:-1], labels[1:]),
        (labels[:-1, :-1], labels[1:, 1:]),
        (labels[:-1, 1:], labels[1:, :-1]),
    ):
        meet = (a != b) & (a > 0) & (b > 0)
        hit[a[meet]] = True
        hit[b[meet]] = True
    return hit[1:]


def _owners(instances: Instances, catalog) -> np.ndarray:
    """Catalog row owning each instance (-1: none): the brightest source inside the mask."""
    owner = np.full(len(instances), -1, dtype=np.int64)
    if not len(catalog) or not len(instances):
        return owner
    height, width = instances.labels.shape
    x = np.rint(np.asarray(catalog["x"], dtype=float))
    y = np.rint(np.asarray(catalog["y"], dtype=float))
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    rows = np.flatnonzero(inside)
    hit = instances.labels[y[rows].astype(np.intp), x[rows].astype(np.intp)]
    flux = np.asarray(catalog["flux"], dtype=float)[rows]
    flux = np.where(np.isfinite(flux), flux, -np.inf)
    for k in np.argsort(flux, kind="stable"):  # ascending: the brightest writes last
        if hit[k] > 0:
            owner[hit[k] - 1] = rows[k]
    return owner


def _stack(catalog, added):
    from astropy.table import vstack

    meta = dict(catalog.meta)
    out = vstack([catalog, added], metadata_conflicts="silent")
    out.meta = meta
    return out
