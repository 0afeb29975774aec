"""How many sources can any local-centroid detector place within the match radius?

Starts a centroid *at each required source's true position* and counts how many end within
the match radius of it: an oracle that knows where every source is, limited only by what the
image says about the position (noise, neighbours, galaxy profiles). In sparse fields this
bounds the recall any detector can reach under the benchmark's scoring (docs/models.md,
localizer, session 4).

Run: ``.venv/bin/python benchmarks/position_ceiling.py --density 3`` (MeerLICHT, six 1024^2
test-seed fields). ``--method winpos`` is SExtractor's windowed centroid (skysift's
refinement); ``--method peak`` climbs to the nearest maximum of the matched-filtered image and
interpolates it quadratically.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import sep
from scipy import ndimage

from skysift.sim import FieldConfig, simulate_field

SNR_EDGES = (5.0, 7.0, 10.0, 20.0, 50.0, np.inf)


def winpos_from_truth(data, x, y, fwhm):
    xw, yw, _ = sep.winpos(data, x, y, np.full(x.size, fwhm / 2.3548))
    return xw, yw


def matched_peak_from_truth(data, x, y, fwhm):
    smooth = ndimage.gaussian_filter(data, fwhm / 2.3548)
    height, width = smooth.shape
    out = np.empty((x.size, 2))
    for k, (x0, y0) in enumerate(zip(x, y, strict=True)):
        cx, cy = round(float(x0)), round(float(y0))
        for _ in range(8):  # climb to the local maximum
            window = smooth[max(cy - 1, 0) : cy + 2, max(cx - 1, 0) : cx + 2]
            dy, dx = np.unravel_index(np.argmax(window), window.shape)
            nx, ny = max(cx - 1, 0) + dx, max(cy - 1, 0) + dy
            if (nx, ny) == (cx, cy):
                break
            cx, cy = nx, ny
        sub = [0.0, 0.0]
        if 0 < cx < width - 1 and 0 < cy < height - 1:
            for axis, (lo, mid, hi) in enumerate(
                (smooth[cy, cx - 1 : cx + 2], smooth[cy - 1 : cy + 2, cx])
            ):
                curve = lo - 2 * mid + hi
                sub[axis] = 0.5 * (lo - hi) / curve if curve < 0 else 0.0
        out[k] = cx + sub[0], cy + sub[1]
    return out[:, 0], out[:, 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--density", type=float, default=3.0, help="sources per arcmin^2")
    parser.add_argument("--survey", default="meerlicht")
    parser.add_argument("--fields", type=int, default=6)
    parser.add_argument("--radius", type=float, default=1.5, help="match radius, pixels")
    parser.add_argument("--method", choices=("winpos", "peak"), default="winpos")
    args = parser.parse_args()
    refine = winpos_from_truth if args.method == "winpos" else matched_peak_from_truth
    bins = len(SNR_EDGES) - 1
    total, within = np.zeros((2, bins)), np.zeros((2, bins))
    for seed in range(1_100_010, 1_100_010 + args.fields):
        field = simulate_field(
            FieldConfig(survey=args.survey, size=1024, density=args.density, seed=seed)
        )
        band = field.image.bands.index(field.preset.detection_band)
        data = np.ascontiguousarray(field.image.data[band], dtype=np.float64)
        data = data - sep.Background(data).back()
        fwhm = field.info["psf_fwhm"] / field.image.pixel_scale
        truth = field.truth
        snr = np.asarray(truth["snr"], float)
        required = snr >= SNR_EDGES[0]
        x = np.asarray(truth["x"], float)[required]
        y = np.asarray(truth["y"], float)[required]
        galaxy = np.asarray(truth["class"])[required] != "star"
        xr, yr = refine(data, x, y, fwhm)
        close = np.hypot(xr - x, yr - y) <= args.radius
        index = np.digitize(snr[required], SNR_EDGES) - 1
        for row, chosen in enumerate((np.ones_like(galaxy), galaxy)):
            total[row] += np.bincount(index[chosen], minlength=bins)[:bins]
            within[row] += np.bincount(index[chosen & close], minlength=bins)[:bins]
    labels = [
        f"{lo:g}-{hi:g}" if np.isfinite(hi) else f">={lo:g}"
        for lo, hi in itertools.pairwise(SNR_EDGES)
    ]
    print(
        f"{args.survey}, {args.density:g}/arcmin^2, {args.fields} fields, {args.method}, "
        f"radius {args.radius} px"
    )
    print("truth S/N        " + " ".join(f"{lab:>8}" for lab in labels) + "      all")
    for row, name in enumerate(("all sources", "galaxies")):
        fractions = within[row] / np.maximum(total[row], 1)
        overall = within[row].sum() / max(total[row].sum(), 1)
        print(f"{name:<16} " + " ".join(f"{f:8.3f}" for f in fractions) + f" {overall:8.3f}")
    print("sources          " + " ".join(f"{int(n):8d}" for n in total[0]))


if __name__ == "__main__":
    main()
