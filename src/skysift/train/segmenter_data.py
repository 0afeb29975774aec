"""Segmenter training data: Galaxy-Zoo-like cutouts and blended fields with instance truth.

Two kinds of 256 x 256 three-band images, drawn reproducibly per role (train, validation,
test) from the role's seed range (:mod:`skysift.sim.seeds`):

- ``sdss`` g, r, i cutouts centred on a bright elliptical or spiral galaxy (the Mask Galaxy
  paper's Galaxy Zoo images, balanced between the two), with neighbouring stars and galaxies
  at 10-40 sources/arcmin^2;
- ``decals`` g, r, z fields at 40-150 sources/arcmin^2 without a central galaxy, where
  sources blend (the deblending case of Burke et al.).

Every artifact of the simulator stays on. Instances are the truth sources with detection-band
S/N >= ``min_snr`` and a footprint (the simulator's ``FOOTPRINT_NSIGMA`` isophote of the
noiseless light, each pixel owned by the
source that contributes most light there) of at least ``min_area`` pixels; a star-forming
clump has no footprint of its own, it is part of its parent galaxy. By default (the shipped
models' data) a clump owns no pixels, so one beyond its parent's isophote lies on sky;
``clumps_in_footprints=True`` gives the pixels it outshines every other source in to its
parent's mask. Classes follow the truth
morphology (star, elliptical, spiral, other) with one correction: a "spiral" smaller than the
PSF is drawn without arms by the simulator, so it is labelled ``other`` (what it looks like).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from skysift.models.segmenter import CLASSES
from skysift.sim.field import BURKE_PEAK_FRACTIONS, FieldConfig, SimulatedField
from skysift.sim.seeds import dataset_seeds

__all__ = [
    "FOOTPRINT_NSIGMA",
    "SegmenterSamples",
    "instance_targets",
    "segmenter_field_configs",
    "typical_field_configs",
    "unmasked_sources",
]

IMAGE_SIZE = 256
#: Field seeds start here within each role's range (clear of the other models' fields).
SEED_OFFSET = 400_000
#: Fraction of Galaxy-Zoo-like SDSS cutouts (the rest are blended DECaLS fields).
SDSS_FRACTION = 0.75
#: Isophote of the truth masks in units of the sky noise. The first model was trained on
#: 1-sigma footprints, which reach below the noise of single pixels (most of its galaxy misses
#: overlapped the truth with IoU < 0.5); 2 sigma is an edge the image itself shows.
FOOTPRINT_NSIGMA = 2.0
#: Burke et al.'s (2019) "typical field": galaxies and stars per arcmin^2 brighter than the
#: detection band's 5-sigma depth (their figure is for ~30 galaxies/arcmin^2; the stars are a
#: high-latitude count at that depth).
TYPICAL_GALAXY_DENSITY = 30.0
TYPICAL_STAR_DENSITY = 5.0
#: Typical-field seeds start here within each role's range (after the segmenter images).
TYPICAL_SEED_OFFSET = SEED_OFFSET + 50_000


def segmenter_field_configs(
    role: str,
    n: int,
    *,
    offset: int = 0,
    mix_seed: int = 0,
    clumps_in_footprints: bool = False,
    burke_masks: bool = False,
) -> list[FieldConfig]:
    """``n`` segmenter images for ``role`` (``train``, ``validation`` or ``test``).

    Parameters
    ----------
    role : str
        Seed range to draw from.
    n : int
        Number of images.
    offset : int
        Skip this many seeds (datasets can grow without reusing seeds).
    mix_seed : int
        Seed of the draw of image kinds and their properties.
    clumps_in_footprints : bool
        Star-forming clumps' pixels join their parent's mask
        (:class:`~skysift.sim.field.FieldConfig`); the same images otherwise.
    burke_masks : bool
        Truth masks by Burke et al.'s rule (each source's light above a fixed fraction of its
        own peak, :data:`~skysift.sim.field.BURKE_PEAK_FRACTIONS`) instead of the
        :data:`FOOTPRINT_NSIGMA` isophote; the same images otherwise.
    """
    first = dataset_seeds(role, n, offset=SEED_OFFSET + offset).start
    rng = np.random.default_rng([mix_seed, first])
    configs = []
    for k in range(n):
        cutout = rng.random() < SDSS_FRACTION
        common = {  # drawn in this order: star fraction first
            "star_fraction": float(rng.uniform(0.3, 0.7)),
            **_varied_instrument(rng, first + k, clumps_in_footprints, burke_masks),
        }
        if cutout:
            central = "elliptical" if k % 2 == 0 else "spiral"
            config = FieldConfig(
                survey="sdss",
                density=float(math.exp(rng.uniform(math.log(10.0), math.log(40.0)))),
                central_galaxy=central,
                **common,
            )
        else:
            config = FieldConfig(
                survey="decals",
                density=float(math.exp(rng.uniform(math.log(40.0), math.log(150.0)))),
                **common,
            )
        configs.append(config)
    return configs


def _varied_instrument(
    rng: np.random.Generator, seed: int, clumps_in_footprints: bool, burke_masks: bool
) -> dict:
    """Field settings every segmenter image draws: PSF variation, optical centre, cosmics;
    and the truth masks' definition."""
    return {
        "size": IMAGE_SIZE,
        "seed": seed,
        "psf_size_growth": float(rng.uniform(0.0, 0.2)),
        "optical_centre": tuple(float(v) for v in rng.uniform(-512, 768, 2)),
        "psf_reference_radius": 1024.0,
        "cosmic_rays": float(rng.uniform(10.0, 100.0)),
        "footprint_nsigma": FOOTPRINT_NSIGMA,
        "footprint_peak_fractions": BURKE_PEAK_FRACTIONS if burke_masks else None,
        "clumps_in_footprints": clumps_in_footprints,
    }


def typical_field_configs(
    role: str,
    n: int,
    *,
    mix_seed: int = 0,
    clumps_in_footprints: bool = False,
    burke_masks: bool = False,
    seed_offset: int = TYPICAL_SEED_OFFSET,
) -> list[FieldConfig]:
    """``n`` of Burke et al.'s typical fields for ``role``: DECaLS g, r, z, 256 x 256.

    :data:`TYPICAL_GALAXY_DENSITY` galaxies and :data:`TYPICAL_STAR_DENSITY` stars per
    arcmin^2 above the 5-sigma depth (fainter ones follow the number counts), no central
    galaxy, every artifact on; PSF variation and cosmic rays drawn as for the segmenter's
    images. Seeds are clear of :func:`segmenter_field_configs`'s. ``clumps_in_footprints``
    and ``burke_masks`` as there. ``seed_offset`` places the fields elsewhere in the role's
    seeds (another model's typical fields).
    """
    first = dataset_seeds(role, n, offset=seed_offset).start
    rng = np.random.default_rng([mix_seed, first])
    density = TYPICAL_GALAXY_DENSITY + TYPICAL_STAR_DENSITY
    return [
        FieldConfig(
            survey="decals",
            density=density,
            star_fraction=TYPICAL_STAR_DENSITY / density,
            **_varied_instrument(rng, first + k, clumps_in_footprints, burke_masks),
        )
        for k in range(n)
    ]


def instance_targets(
    field: SimulatedField, *, min_snr: float = 5.0, min_area: int = 4
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Instance label map and per-instance truth of a simulated field.

    Parameters
    ----------
    field : SimulatedField
    min_snr : float
        Lowest detection-band S/N of an instance.
    min_area : int
        Fewest footprint pixels of an instance.

    Returns
    -------
    labels : numpy.ndarray
        int32 map: the truth id of the instance owning each pixel, 0 elsewhere.
    instances : dict of arrays
        ``id``, ``label`` (1-based index into :data:`CLASSES`), ``x``, ``y``, ``snr``,
        ``central`` (the image's central galaxy).
    """
    truth = field.truth
    ids = np.asarray(truth["id"], dtype=np.int64)
    snr = np.asarray(truth["snr"], dtype=float)
    morphology = np.asarray(truth["morphology"]).astype("U10")
    hlr = np.asarray(truth["hlr"].value, dtype=float)
    psf_fwhm = np.asarray(truth["psf_fwhm"].value, dtype=float)
    morphology = np.where((morphology == "spiral") & (hlr < psf_fwhm), "other", morphology)
    footprints = np.asarray(field.footprints)
    areas = np.bincount(footprints.ravel(), minlength=int(ids.max(initial=0)) + 1)
    keep = (
        (snr >= min_snr)
        & (areas[ids] >= min_area)
        & np.isin(morphology, CLASSES)  # clumps belong to their parent
    )
    lookup = np.zeros(int(ids.max(initial=0)) + 1, dtype=np.int32)
    lookup[ids[keep]] = ids[keep]
    labels = lookup[footprints]
    class_index = {name: index + 1 for index, name in enumerate(CLASSES)}
    central = np.zeros(ids.size, dtype=bool)
    if field.config.central_galaxy is not None:
        central[ids == 1] = True  # the central galaxy is drawn first
    instances = {
        "id": ids[keep],
        "label": np.array([class_index[m] for m in morphology[keep]], dtype=np.int64),
        "x": np.asarray(truth["x"], dtype=float)[keep],
        "y": np.asarray(truth["y"], dtype=float)[keep],
        "snr": snr[keep],
        "central": central[keep],
    }
    return labels, instances


def unmasked_sources(
    field: SimulatedField, instance_ids: np.ndarray, *, min_snr: float = 2.0
) -> dict[str, np.ndarray]:
    """Truth sources of a field that are not instances: too faint for a mask, or hidden
    under a brighter neighbour's footprint.

    A detection of one of them finds a real source whose mask cannot be scored, so the
    Burke et al. figure counts it as neither right nor wrong
    (:func:`skysift.evaluate.segmentation.precision_at_recall_by_snr`), as the localizer's
    scoring treats truth between its S/N limits. Star-forming clumps are left out: a
    detection of one is a shred, a false source.

    Returns
    -------
    dict of arrays
        ``x``, ``y`` and ``snr`` of the sources with detection-band S/N >= ``min_snr``.
    """
    truth = field.truth
    ids = np.asarray(truth["id"], dtype=np.int64)
    snr = np.asarray(truth["snr"], dtype=float)
    keep = (
        (snr >= min_snr)
        & ~np.asarray(truth["is_shred"], dtype=bool)
        & ~np.isin(ids, np.asarray(instance_ids, dtype=np.int64))
    )
    return {
        "x": np.asarray(truth["x"], dtype=float)[keep],
        "y": np.asarray(truth["y"], dtype=float)[keep],
        "snr": snr[keep],
    }


@dataclass(frozen=True)
class SegmenterSamples:
    """Extractor for :func:`skysift.sim.dataset.write_dataset`: one sample per image.

    Stores the raw image (ADU) with the per-band level and scale of the whole image (the
    normalization inference uses), the instance label map, and one row per instance
    (``inst_*`` arrays; all belong to sample 0 of the shard), the truth sources with
    S/N >= ``unmasked_snr`` that are not instances (``unmasked_*``, see
    :func:`unmasked_sources`), and the detection band's PSF FWHM at the image centre
    (``psf_fwhm``, pixels), the reference a PSF-aware star/galaxy decision needs.
    """

    min_snr: float = 5.0
    min_area: int = 4
    unmasked_snr: float = 2.0

    def __call__(self, field: SimulatedField) -> dict[str, np.ndarray]:
        from skysift.normalization import robust_level_scale

        data = np.asarray(field.image.data, dtype=np.float32)
        stats = np.array(
            [robust_level_scale(band, field.image.mask) for band in data], dtype=np.float32
        )
        labels, instances = instance_targets(field, min_snr=self.min_snr, min_area=self.min_area)
        height, width = labels.shape
        fwhm = float(field.psf.fwhm_at((width - 1) / 2, (height - 1) / 2)) / field.psf.pixel_scale
        return {
            "image": data[np.newaxis],
            "mask": np.asarray(field.image.mask)[np.newaxis].astype(np.uint8),
            "level": stats[np.newaxis, :, 0],
            "scale": stats[np.newaxis, :, 1],
            "labels": labels[np.newaxis].astype(np.int32),
            "seed": np.array([field.config.seed], dtype=np.int64),
            "psf_fwhm": np.array([fwhm], dtype=np.float32),
            **{f"inst_{k}": v for k, v in instances.items()},
            **{
                f"unmasked_{k}": v
                for k, v in unmasked_sources(
                    field, instances["id"], min_snr=self.unmasked_snr
                ).items()
            },
        }
