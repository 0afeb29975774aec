"""How well can any single-source centroid place bright stars in crowded fields?

Draws the localizer benchmark's MeerLICHT test fields (same seeds) and starts the windowed
centroid (SExtractor's XWIN/YWIN, the localizer's refinement) **at the true position** of
every star with S/N >= 20 (the stars of the benchmark's centroid-RMS column), on

- the noiseless, sky-free light of every source: only the neighbours (confusion) move it;
- the observed image (noise, artifacts) minus the true sky: confusion and noise together,

with the localizer's window (PSF sigma) and a window half as wide. As in the benchmark the
RMS is taken over the centroids that end within the 1.5 px match radius (the others would be
misses), and the fraction that does is reported beside it. Where the noiseless oracle is above
the issue's 0.15 px, no centroid that measures one source at a time can reach it: neighbours
have to be modelled and subtracted (docs/models.md, localizer, session 9).

Run: ``.venv/bin/python benchmarks/centroid_ceiling.py`` (writes
``benchmarks/results/centroid_ceiling.json``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_localizer import ROOT, scenarios
from peak_ceiling import MEERLICHT, noiseless_light, write_rows

from skysift.source_measures import windowed_centroids

WINDOWS = {"PSF sigma (the localizer's)": 1.0, "half the PSF sigma": 0.5}


def oracle_offsets(config) -> dict[str, np.ndarray]:
    """Per image variant and window: the offsets of centroids started at the truth."""
    from skysift.sim import simulate_field

    field, band, sky, light = noiseless_light(config)
    real = simulate_field(config)  # noise and artifacts on, as the benchmark's
    truth = real.truth
    if not np.array_equal(np.asarray(truth["x"]), np.asarray(field.truth["x"])):
        raise RuntimeError(f"seed {config.seed}: sources differ without artifacts")
    observed = np.asarray(real.image.data[band], dtype=float) - sky
    bright = (np.asarray(truth["class"]) == "star") & (np.asarray(truth["snr"]) >= 20)
    x_true = np.asarray(truth["x"], dtype=float)[bright]
    y_true = np.asarray(truth["y"], dtype=float)[bright]
    psf_sigma = np.median(np.asarray(truth["psf_fwhm"].value)) / (2.3548 * field.preset.pixel_scale)
    out = {}
    for image_name, data in (("noiseless light", light), ("observed - true sky", observed)):
        data = np.ascontiguousarray(data, dtype=np.float32)
        for window_name, factor in WINDOWS.items():
            x, y, _ = windowed_centroids(data, x_true, y_true, psf_sigma * factor)
            out[f"{image_name} | {window_name}"] = np.hypot(x - x_true, y - y_true)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 768^2 field per scenario")
    parser.add_argument("--out-dir", default=str(ROOT))
    args = parser.parse_args()
    offsets: dict[tuple[str, str], list[np.ndarray]] = {}
    for label, config in scenarios(args.quick):
        if label not in MEERLICHT:
            continue
        for variant, distance in oracle_offsets(config).items():
            offsets.setdefault((label, variant), []).append(distance)
    rows = []
    for (label, variant), parts in offsets.items():
        distance = np.concatenate(parts)
        finite = np.where(np.isfinite(distance), distance, np.inf)
        within = finite < 1.5
        row = {
            "scenario": label,
            "variant": variant,
            "n_stars": int(distance.size),
            "rms_within_1p5": float(np.sqrt(np.mean(finite[within] ** 2))),
            "median_within_1p5": float(np.median(finite[within])),
            "fraction_within_1p5": float(within.mean()),
        }
        rows.append(row)
        figures = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if isinstance(v, float))
        print(f"{label:30s} {variant:45s} {figures} ({row['n_stars']} stars)", flush=True)
    write_rows(Path(args.out_dir), "centroid_ceiling", rows, quick=args.quick)


if __name__ == "__main__":
    main()
