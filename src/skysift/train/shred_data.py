"""Shred classifier training data: both views of every source a catalog would hold.

The fields are DECaLS g, r, z images, 1024 x 1024, with Burke et al.'s typical-field
densities (:func:`skysift.train.segmenter_data.typical_field_configs`: 30 galaxies and 5 stars
per arcmin^2 above the 5-sigma depth). The validation and test fields keep the simulator's
default galaxy mix, in which 10 % of galaxies are clumpy star-forming disks whose 2-6 bright
clumps are the shreds: about 1 % of the sources at S/N >= 5 there. The training fields hold
:data:`TRAINING_GALAXY_MIX`, four times as many clumpy disks, so that the network sees
thousands of shreds; its output is moved back to the validation fields' share of shreds by
Bayes' rule when training ends (:mod:`skysift.train.shred`). Every artifact of the
simulator stays on; the PSF and cosmic rays vary from field to field as in the segmenter's
images.

Samples are the truth sources with detection-band S/N >= ``min_snr``: stars, galaxies and
clumps (label 1). A catalog's position is not the truth's: each sample is cut at the truth
position plus an offset drawn uniformly within +-``jitter`` pixels on each axis (seeded by the
field), which the network must tolerate. The network's seeing input is the detection
band's PSF FWHM at the field's centre, one value per image as a header's ``SEEING`` or a
measurement gives it at inference.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from skysift.sim.field import FieldConfig, SimulatedField

__all__ = [
    "FIELD_SIZE",
    "SEED_OFFSET",
    "TRAINING_GALAXY_MIX",
    "ShredStamps",
    "shred_field_configs",
]

#: Side of the training fields (pixels): a 4.5-arcmin DECaLS field holds ~700 sources.
FIELD_SIZE = 1024
#: Field seeds start here within each role's range (clear of the other models' fields).
SEED_OFFSET = 600_000
#: Galaxy mix of the training fields: the default's clumpy share (0.1) times four, the
#: other types scaled down to make room.
TRAINING_GALAXY_MIX = (
    ("elliptical", 0.167),
    ("spiral", 0.1),
    ("disk", 0.233),
    ("clumpy", 0.4),
    ("compact", 0.1),
)
#: Softening of the input normalization (the segmenter's, so its bands can be passed on).
SOFTENING = 4.0


def shred_field_configs(role: str, n: int, *, mix_seed: int = 0) -> list[FieldConfig]:
    """``n`` shred-classifier fields for ``role`` (``train``, ``validation`` or ``test``).

    Typical DECaLS fields (:func:`skysift.train.segmenter_data.typical_field_configs`) at
    :data:`FIELD_SIZE` pixels, drawn from this model's own seeds; training fields hold
    :data:`TRAINING_GALAXY_MIX`.
    """
    from skysift.train.segmenter_data import typical_field_configs

    configs = typical_field_configs(role, n, mix_seed=mix_seed, seed_offset=SEED_OFFSET)
    mix = {"galaxy_mix": TRAINING_GALAXY_MIX} if role == "train" else {}
    return [replace(config, size=FIELD_SIZE, **mix) for config in configs]


@dataclass(frozen=True)
class ShredStamps:
    """Extractor for :func:`skysift.sim.dataset.write_dataset`: one sample per source."""

    min_snr: float = 5.0
    jitter: float = 1.0

    def __call__(self, field: SimulatedField) -> dict[str, np.ndarray]:
        from skysift.segment import network_input
        from skysift.shreds import shred_inputs

        truth = field.truth
        snr = np.asarray(truth["snr"], dtype=float)
        rows = np.flatnonzero(snr >= self.min_snr)
        rng = np.random.default_rng([field.config.seed, 7])
        offsets = rng.uniform(-self.jitter, self.jitter, (rows.size, 2))
        x = np.asarray(truth["x"], dtype=float)[rows] + offsets[:, 0]
        y = np.asarray(truth["y"], dtype=float)[rows] + offsets[:, 1]
        bands = network_input(field.image, channels=field.image.n_bands, softening=SOFTENING)
        is_shred = np.asarray(truth["is_shred"], dtype=bool)[rows]
        kind = np.where(is_shred, "shred", np.asarray(truth["class"])[rows]).astype("U6")
        # one FWHM per image, at its centre: what a header's SEEING or a measurement gives
        height, width = field.image.shape
        centre = field.psf.fwhm_at((width - 1) / 2, (height - 1) / 2) / field.psf.pixel_scale
        fwhm = np.full(rows.size, float(centre))
        return {
            "cutouts": shred_inputs(bands, x, y).astype(np.float16),
            "label": is_shred.astype(np.uint8),
            "kind": kind,
            "snr": snr[rows].astype(np.float32),
            "psf_fwhm": fwhm.astype(np.float32),
            "x": x.astype(np.float32),
            "y": y.astype(np.float32),
            "id": np.asarray(truth["id"], dtype=np.int64)[rows],
            "seed": np.full(rows.size, field.config.seed, dtype=np.int64),
        }
