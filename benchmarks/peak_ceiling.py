"""How many required sources have a peak of their own, even in a perfect image?

Draws the localizer benchmark's MeerLICHT test fields (same seeds, crowded, 40/arcmin^2 and
sparse) without noise and without artifacts, subtracts the noiseless sky, and takes every
local maximum (3x3) of that perfect image, and of it smoothed by the PSF (the matched filter),
above a fraction of the pixel or matched-filter noise of the real field, as a "catalog".
Scored exactly like the localizer benchmark (truth S/N >= 5 required, 2-5 neutral, 1.5 px,
one-to-one). A source that sits on the wing of a brighter neighbour has no maximum of its
own even without noise: this is the recall that any detector reporting one position per peak
cannot exceed, and it shows how much of a crowded field's score the scoring takes away
before noise is considered (docs/models.md, localizer, session 6).

Run: ``.venv/bin/python benchmarks/peak_ceiling.py`` (writes
``benchmarks/results/peak_ceiling.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
from astropy.table import QTable
from bench_localizer import ROOT, scenarios, score
from scipy import ndimage

from skysift.sim import simulate_field

MEERLICHT = ("meerlicht crowded 150/arcmin2", "meerlicht 40/arcmin2", "meerlicht sparse 3/arcmin2")


def noiseless_light(config):
    """The artifact-free field, the detection band's index, its noiseless sky and its light.

    Returns ``(field, band, sky, light)``: ``field`` is ``config`` without artifacts (noise
    on), ``sky`` the noiseless sky of that band and ``light`` the noiseless, sky-free light of
    every source.
    """
    clean = config.without_artifacts()
    field = simulate_field(clean)
    ideal = simulate_field(dataclasses.replace(clean, noise=False))
    sky = simulate_field(dataclasses.replace(clean, noise=False, density=0.0))
    band = ideal.image.bands.index(ideal.preset.detection_band)
    sky_band = np.asarray(sky.image.data[band], float)
    light = np.asarray(ideal.image.data[band], float) - sky_band
    return field, band, sky_band, light


def perfect_peaks(config, *, smooth: bool, threshold: float):
    """The real field and the local maxima of its noiseless, artifact-free, sky-free light."""
    field, band, sky, light = noiseless_light(config)
    pixel_noise = 1.4826 * np.median(np.abs(field.image.data[band] - sky - light))
    kernel = np.zeros((41, 41))
    kernel[20, 20] = 1.0
    if smooth:
        sigma = np.median(np.asarray(field.truth["psf_fwhm"].value)) / (
            2.3548 * field.preset.pixel_scale
        )
        light = ndimage.gaussian_filter(light, sigma)
        kernel = ndimage.gaussian_filter(kernel, sigma)
    noise = pixel_noise * np.sqrt((kernel**2).sum())
    peak = (light == ndimage.maximum_filter(light, size=3)) & (light > threshold * noise)
    rows, cols = np.nonzero(peak)
    return field, QTable({"x": cols.astype(float), "y": rows.astype(float)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one 768^2 field per scenario")
    parser.add_argument("--out-dir", default=str(ROOT))
    args = parser.parse_args()
    variants = {
        "perfect image, every local maximum above 1 sigma of the pixel noise": (False, 1.0),
        "perfect image smoothed by the PSF (matched filter), maxima above 3 sigma": (True, 3.0),
    }
    keys = ("tp", "fp", "fn", "tp_isolated", "fn_isolated", "tp_blended", "fn_blended")
    rows = []
    for name, (smooth, threshold) in variants.items():
        sums: dict[str, dict[str, int]] = {}
        for label, config in scenarios(args.quick):
            if label not in MEERLICHT:
                continue
            field, catalog = perfect_peaks(config, smooth=smooth, threshold=threshold)
            metrics, _ = score(catalog, field)
            total = sums.setdefault(label, dict.fromkeys(keys, 0))
            for key in keys:
                total[key] += int(metrics[key])
        for label, s in sums.items():
            row = {
                "variant": name,
                "scenario": label,
                "f1": 2 * s["tp"] / max(2 * s["tp"] + s["fp"] + s["fn"], 1),
                "precision": s["tp"] / max(s["tp"] + s["fp"], 1),
                "recall": s["tp"] / max(s["tp"] + s["fn"], 1),
                "recall_isolated": s["tp_isolated"] / max(s["tp_isolated"] + s["fn_isolated"], 1),
                "recall_blended": s["tp_blended"] / max(s["tp_blended"] + s["fn_blended"], 1),
                **s,
            }
            rows.append(row)
            print(
                f"{name[:40]:40s} {label:30s} F1 {row['f1']:.3f} P {row['precision']:.3f} "
                f"R {row['recall']:.3f} R_iso {row['recall_isolated']:.3f} "
                f"R_blend {row['recall_blended']:.3f}",
                flush=True,
            )
    write_rows(Path(args.out_dir), "peak_ceiling", rows, quick=args.quick)


def write_rows(root: Path, name: str, rows: list[dict], *, quick: bool) -> None:
    """``benchmarks/results/<name>.json`` under ``root``: the date, the mode and the rows."""
    out = root / "benchmarks" / "results" / f"{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"date": time.strftime("%Y-%m-%d"), "quick": quick, "rows": rows}
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
