"""Make the preview images of docs/simulation.md.

Run: ``.venv/bin/python docs/figures_simulation.py`` (writes docs/images/sim_*.png).
"""

from __future__ import annotations

from pathlib import Path

from skysift.sim import FieldConfig, simulate_field
from skysift.sim.preview import preview_png

OUT = Path(__file__).parent / "images"

FIGURES = [
    (
        "sim_sparse",
        "meerlicht, 3 sources/arcmin^2 (sparse), all artifacts",
        FieldConfig(survey="meerlicht", size=512, density="sparse", seed=2_001_001),
        (),
        None,
    ),
    (
        "sim_crowded",
        "meerlicht, 150/arcmin^2 with a globular-cluster core",
        FieldConfig(
            survey="meerlicht",
            size=512,
            density="crowded",
            seed=2_001_002,
            star_fraction=0.9,
            cluster_fraction=0.5,
            cluster_radius=40.0,
        ),
        (),
        None,
    ),
    (
        "sim_artifacts",
        "artifact truth outlined: cosmic rays, trail, hot pixels, bad column, spikes, bleeding",
        FieldConfig(
            survey="meerlicht",
            size=384,
            density=40,
            seed=2_001_003,
            cosmic_rays=300.0,
            hot_pixels=100.0,
            bad_columns=2,
            satellite_trails=1,
            star_fraction=0.9,
        ),
        ("artifacts",),
        None,
    ),
    (
        "sim_spiral",
        "sdss g,r,i: a spiral (two logarithmic arms + bulge)",
        FieldConfig(
            survey="sdss",
            size=256,
            density=5,
            seed=2_001_004,
            central_galaxy="spiral",
            central_mag=14.5,
        ).without_artifacts(),
        (),
        None,
    ),
    (
        "sim_elliptical",
        "sdss g,r,i: an elliptical (de Vaucouleurs)",
        FieldConfig(
            survey="sdss",
            size=256,
            density=5,
            seed=2_001_005,
            central_galaxy="elliptical",
            central_mag=14.5,
        ).without_artifacts(),
        (),
        None,
    ),
    (
        "sim_clumpy",
        "decals g,r,z: clumpy disk, shreds marked x",
        FieldConfig(
            survey="decals",
            size=256,
            density=5,
            seed=2_001_006,
            central_galaxy="clumpy",
            central_mag=16.0,
        ).without_artifacts(),
        ("shred",),
        (slice(48, 208), slice(48, 208)),
    ),
    (
        "sim_decals_field",
        "decals g,r,z, 30/arcmin^2, truth stars (o) and galaxies (s)",
        FieldConfig(survey="decals", size=384, density=30, seed=2_001_007),
        ("star", "galaxy"),
        None,
    ),
]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, title, config, mark, crop in FIGURES:
        field = simulate_field(config)
        preview_png(field, OUT / f"{name}.png", mark=mark, crop=crop, title=title, dpi=80)
        print(name, field.info)


if __name__ == "__main__":
    main()
