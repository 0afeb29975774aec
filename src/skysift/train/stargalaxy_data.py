"""Star/galaxy training data: cutouts at the shipped localizer's positions, varying PSF.

The fields are 1024 x 1024 pieces of a simulated MeerLICHT detector (10,560 pixels square, the
optical axis at its centre) at random places on it, so the PSF's growth and elongation with
distance from the axis follow one law across fields while the seeing changes from field to
field. Each field is localized with the *shipped* localizer; its detections are matched to
truth (1.5 px) and every match with truth S/N >= 3 becomes a sample: a 34 x 34 normalized
cutout (:func:`skysift.stargalaxy.classifier_inputs`; edge cutouts padded and flagged, never
dropped), the detector position, the label (1 = star), truth S/N, galaxy type, and the catalog
features of the feature-based baseline (:mod:`skysift.evaluate.feature_classifier`).

Stars outnumber galaxies about 10:1 as in the paper's MeerLICHT x DECaLS sample. Clumpy
galaxies are left out of the mix: their clumps are the subject of the shred classifier.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from skysift.sim.field import FieldConfig, SimulatedField
from skysift.sim.seeds import dataset_seeds
from skysift.stargalaxy import DetectorGeometry, classifier_inputs

__all__ = ["DETECTOR", "StarGalaxyCutouts", "detector_geometry", "stargalaxy_field_configs"]

#: The simulated MeerLICHT detector: 10,560 pixels square, optical axis at its centre.
DETECTOR = DetectorGeometry(optical_centre=(5279.5, 5279.5), half_size=(5280.0, 5280.0))
#: PSF FWHM growth and shear at the detector corner (a fixed optical design).
PSF_SIZE_GROWTH = 0.35
PSF_ELLIPTICITY_EDGE = 0.18
FIELD_SIZE = 1024
#: Field seeds start here within each role's range (clear of the localizer's fields).
SEED_OFFSET = 200_000
GALAXY_MIX = (("elliptical", 0.3), ("spiral", 0.15), ("disk", 0.35), ("compact", 0.2))
SOFTENING = 4.0


def stargalaxy_field_configs(
    role: str,
    n: int,
    *,
    offset: int = 0,
    mix_seed: int = 0,
    psf_size_growth: float = PSF_SIZE_GROWTH,
    psf_ellipticity_edge: float = PSF_ELLIPTICITY_EDGE,
    psf_coma_edge: float = 0.0,
) -> list[FieldConfig]:
    """``n`` detector pieces for ``role`` (``train`` or ``test``), reproducibly drawn.

    ``psf_size_growth``, ``psf_ellipticity_edge`` and ``psf_coma_edge`` set the optical law
    (FWHM growth, radial shear and coma light fraction at the detector corner); the defaults
    are the shipped model's (no coma).
    """
    first = dataset_seeds(role, n, offset=SEED_OFFSET + offset).start
    rng = np.random.default_rng([mix_seed, first])
    reach = 2 * DETECTOR.half_size[0] - FIELD_SIZE
    # the corner of the detector reaches rho = 1 at the half-diagonal
    reference = math.hypot(*DETECTOR.half_size)
    configs = []
    for k in range(n):
        ox, oy = (float(v) for v in rng.uniform(0, reach, 2).round())
        configs.append(
            FieldConfig(
                survey="meerlicht",
                size=FIELD_SIZE,
                density=float(math.exp(rng.uniform(math.log(5.0), math.log(80.0)))),
                seed=first + k,
                star_fraction=float(rng.uniform(0.82, 0.88)),
                galaxy_mix=GALAXY_MIX,
                psf_size_growth=psf_size_growth,
                psf_ellipticity_edge=psf_ellipticity_edge,
                psf_coma_edge=psf_coma_edge,
                optical_centre=(
                    DETECTOR.optical_centre[0] - ox,
                    DETECTOR.optical_centre[1] - oy,
                ),
                psf_reference_radius=reference,
            )
        )
    return configs


def detector_geometry(config: FieldConfig) -> DetectorGeometry:
    """The :class:`DetectorGeometry` of a field made by :func:`stargalaxy_field_configs`."""
    cx, cy = config.optical_centre
    origin = (DETECTOR.optical_centre[0] - cx, DETECTOR.optical_centre[1] - cy)
    return DetectorGeometry(DETECTOR.optical_centre, DETECTOR.half_size, origin=origin)


@functools.cache
def _localizer():
    from skysift.localizer import LocalizeConfig, Localizer

    return Localizer(LocalizeConfig())


@dataclass(frozen=True)
class StarGalaxyCutouts:
    """Extractor for :func:`skysift.sim.dataset.write_dataset`: one sample per matched source."""

    size: int = 34
    min_snr: float = 3.0
    match_radius: float = 1.5

    def __call__(self, field: SimulatedField) -> dict[str, np.ndarray]:
        from skysift.evaluate.feature_classifier import catalog_features
        from skysift.evaluate.matching import match_catalogs
        from skysift.image import Image

        band = field.image.bands.index(field.preset.detection_band)
        image = Image.from_array(
            field.image.data[band],
            mask=field.image.mask,
            pixel_scale=field.image.pixel_scale,
            min_size=16,
        )
        catalog, _ = _localizer()(image)
        truth = field.truth
        snr = np.asarray(truth["snr"], float)
        kept = np.flatnonzero(snr >= 2.0)
        x = np.asarray(catalog["x"].value if hasattr(catalog["x"], "value") else catalog["x"])
        y = np.asarray(catalog["y"].value if hasattr(catalog["y"], "value") else catalog["y"])
        match = match_catalogs(
            x,
            y,
            np.asarray(truth["x"])[kept],
            np.asarray(truth["y"])[kept],
            radius=self.match_radius,
        )
        det = match.detection_index
        rows = kept[match.truth_index]
        good = snr[rows] >= self.min_snr
        det, rows = det[good], rows[good]
        geometry = detector_geometry(field.config)
        cutouts, edge = classifier_inputs(
            image, x[det], y[det], softening=SOFTENING, size=self.size
        )
        psf_fwhm_pix = np.asarray(truth["psf_fwhm"].value)[rows] / field.image.pixel_scale
        features = catalog_features(image, x[det], y[det], psf_fwhm=psf_fwhm_pix)
        positions = geometry.normalized(x[det], y[det])
        return {
            "cutout": cutouts.astype(np.float16),
            "position": positions,
            "radius": geometry.radius(x[det], y[det]).astype(np.float32),
            "label": (np.asarray(truth["class"])[rows] == "star").astype(np.uint8),
            "snr": snr[rows].astype(np.float32),
            "galaxy_type": np.asarray(truth["galaxy_type"])[rows].astype("U10"),
            "edge": edge,
            "features": features.astype(np.float32),
            "seed": np.full(det.size, field.config.seed, dtype=np.int64),
        }
