"""Which simulated fields the localizer is trained, validated and tested on.

One shipped localizer serves every preset, so its fields mix surveys, PSF sizes and their
variation, densities from sparse to globular-cluster cores, star/galaxy mixes, and every
artifact. :func:`localizer_field_configs` draws those mixes reproducibly; the seeds come from
the range reserved for the role (:mod:`skysift.sim.seeds`).
"""

from __future__ import annotations

import math

import numpy as np

from skysift.sim.field import FieldConfig
from skysift.sim.seeds import dataset_seeds

__all__ = ["localizer_field_configs"]

_SURVEYS = (("meerlicht", 0.5), ("decals", 0.25), ("sdss", 0.25))


def localizer_field_configs(
    role: str, n: int, *, size: int = 512, offset: int = 0, mix_seed: int = 0
) -> list[FieldConfig]:
    """``n`` varied field configs for ``role`` (``train``, ``validation`` or ``test``).

    Parameters
    ----------
    role : str
        Seed range to draw field seeds from.
    n : int
        Number of fields.
    size : int
        Field side in pixels.
    offset : int
        Place in the role's seed range (see :func:`skysift.sim.seeds.dataset_seeds`); lets
        datasets grow without reuse.
    mix_seed : int
        Seed of the draw of survey, density and the other field properties.
    """
    first = dataset_seeds(role, n, offset=offset).start
    rng = np.random.default_rng([mix_seed, first])
    names, weights = zip(*_SURVEYS, strict=True)
    configs = []
    for k in range(n):
        cluster = rng.random() < 0.3
        configs.append(
            FieldConfig(
                survey=str(rng.choice(names, p=weights)),
                size=size,
                density=float(math.exp(rng.uniform(math.log(1.0), math.log(300.0)))),
                seed=first + k,
                star_fraction=float(rng.uniform(0.3, 0.95)),
                cluster_fraction=float(rng.uniform(0.3, 0.8)) if cluster else 0.0,
                cluster_radius=float(rng.uniform(10.0, 60.0)),
                cluster_centre=tuple(float(v) for v in rng.uniform(0, size, 2)),
                psf_size_growth=float(rng.uniform(0.0, 0.3)),
                psf_ellipticity_edge=float(rng.uniform(0.0, 0.15)),
                optical_centre=tuple(float(v) for v in rng.uniform(-1.5 * size, 2.5 * size, 2)),
                psf_reference_radius=float(2.0 * size),
                sky_gradient=float(rng.uniform(0.0, 0.3)),
                cosmic_rays=float(rng.uniform(10.0, 200.0)),
                hot_pixels=float(rng.uniform(5.0, 100.0)),
                bad_columns=int(rng.integers(0, 4)),
                satellite_trails=int(rng.random() < 0.5) + int(rng.random() < 0.15),
            )
        )
    return configs
