"""Does the star/galaxy network's position input help when the PSF varies more strongly?

The ablation of ``bench_stargalaxy.py`` measured no outer-field gain from the position branch
with the shipped optical law (FWHM +35 % and radial shear 0.18 at the detector corner). This
benchmark repeats the paper's comparison (its network with and without the position branch,
3 seeds each, same reduced budget) on data simulated with a stronger law, to find whether the
gain appears once the PSF at a position carries more than the cutout shows.

Run: ``.venv/bin/python benchmarks/position_sensitivity.py --growth 1.0 --shear 0.4``. It
simulates 120 training and 30 test pieces of the MeerLICHT-like detector with that law
(``data/stargalaxy_psf_g<growth>_s<shear>_{train,test}``; cutouts at the shipped localizer's
positions, as for the shipped model), trains the six networks and adds a row per law to
``benchmarks/results/stargalaxy_position_sensitivity.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np
from bench_stargalaxy import ROOT, ablation, ablation_summary, load_ablation_data

from skysift.sim.dataset import write_dataset
from skysift.train.stargalaxy_data import StarGalaxyCutouts, stargalaxy_field_configs

RESULTS = ROOT / "benchmarks" / "results" / "stargalaxy_position_sensitivity.json"
IMAGES = ROOT / "docs" / "images"


def simulate(directory: Path, role: str, n: int, growth: float, shear: float, coma: float) -> None:
    configs = stargalaxy_field_configs(
        role, n, psf_size_growth=growth, psf_ellipticity_edge=shear, psf_coma_edge=coma
    )
    write_dataset(
        directory,
        configs,
        StarGalaxyCutouts(),
        description=f"{role} pieces, PSF growth {growth:g}, shear {shear:g}, coma {coma:g}",
    )


def psf_figure(laws: list[tuple[float, float, float]], path: Path) -> None:
    """PSF stamps from the detector centre to its corner, one row per optical law
    (growth, shear, coma), on the simulated MeerLICHT detector at 2.5" seeing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skysift.sim.presets import get_preset
    from skysift.sim.psf import VaryingPSF
    from skysift.train.stargalaxy_data import DETECTOR

    preset = get_preset("meerlicht")
    centre = DETECTOR.optical_centre
    reference = float(np.hypot(*DETECTOR.half_size))
    radii = (0.0, 0.35, 0.7, 1.0)
    fig, axes = plt.subplots(len(laws), len(radii), figsize=(2 * len(radii), 2.1 * len(laws)))
    for row, (growth, shear, coma) in enumerate(laws):
        psf = VaryingPSF(
            fwhm_centre=2.5,
            beta=preset.psf_beta,
            centre=centre,
            reference_radius=reference,
            size_growth=growth,
            ellipticity_edge=shear,
            coma_edge=coma,
            pixel_scale=preset.pixel_scale,
        )
        for col, rho in enumerate(radii):
            offset = rho * reference / np.sqrt(2)
            stamp = psf.at(centre[0] + offset, centre[1] + offset).drawImage(
                nx=25, ny=25, scale=preset.pixel_scale, method="no_pixel"
            )
            ax = axes[row, col]
            ax.imshow(np.arcsinh(stamp.array / stamp.array.max() * 30), origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"rho = {rho:g}")
            if col == 0:
                ax.set_ylabel(f"g {growth:g}, e {shear:g}, coma {coma:g}", fontsize=8)
    fig.suptitle("PSF towards the detector corner (up-right), asinh stretch")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def gain_figure(results: dict, path: Path) -> None:
    """Seed-paired ROC-AUC gain of the position branch (position - none) per optical law:
    whole field, inner and outer part, and the outer part per truth S/N bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skysift.train.stargalaxy import SNR_BINS

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    laws = list(results["laws"])
    width = 0.8 / max(len(laws), 1)
    for k, law in enumerate(laws):
        rows = results["laws"][law]["rows"]
        with_ = {r["seed"]: r for r in rows if r["variant"] == "position"}
        without = {r["seed"]: r for r in rows if r["variant"] == "none"}
        seeds = sorted(with_.keys() & without.keys())
        if not seeds:
            continue
        parts = ("all", "inner", "outer")
        gains = np.array(
            [[with_[s][p]["roc_auc"] - without[s][p]["roc_auc"] for p in parts] for s in seeds]
        )
        left.bar(
            np.arange(3) + k * width,
            gains.mean(axis=0),
            width,
            yerr=gains.std(axis=0, ddof=1) if len(seeds) > 1 else None,
            label=law,
            capsize=3,
        )
        per_bin = ablation_summary(rows)["position_gain_outer_by_snr"].get("position - none")
        if per_bin:
            labels = [
                f"{lo:g}-{hi:g}" if hi < 1e8 else f">={lo:g}"
                for lo, hi in itertools.pairwise(SNR_BINS)
            ]
            mean, spread = np.array(per_bin).T
            right.errorbar(
                np.arange(len(labels)),
                mean,
                yerr=spread if len(seeds) > 1 else None,
                marker="o",
                capsize=3,
                label=law,
            )
            right.set_xticks(np.arange(len(labels)), labels)
    left.set_xticks(np.arange(3) + width * (len(laws) - 1) / 2, ["whole field", "inner", "outer"])
    left.axhline(0, color="grey", lw=0.8)
    left.set_ylabel("ROC-AUC gain, position - none (3 seeds)")
    left.legend(fontsize=8)
    right.axhline(0, color="grey", lw=0.8)
    right.set_xlabel("truth S/N")
    right.set_title("outer part, by S/N")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--growth", type=float, required=True, help="FWHM growth at the corner")
    parser.add_argument("--shear", type=float, required=True, help="radial shear at the corner")
    parser.add_argument(
        "--coma", type=float, default=0.0, help="light fraction in the coma flare at the corner"
    )
    parser.add_argument(
        "--simulate-only", action="store_true", help="simulate the data and stop (no training)"
    )
    parser.add_argument(
        "--figure-only",
        action="store_true",
        help="draw docs/images/stargalaxy_psf_laws.png (shipped, strong, strong + coma) and "
        "docs/images/stargalaxy_position_gain.png (from the results file) and stop",
    )
    parser.add_argument("--train-fields", type=int, default=120)
    parser.add_argument("--test-fields", type=int, default=30)
    parser.add_argument("--samples", type=int, default=50_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--variants",
        default="none,position",
        help="Variants to train now (run 'none' and 'position' in two processes to use two "
        "cores); rows of other variants already in the results file are kept.",
    )
    args = parser.parse_args()
    if args.figure_only:
        psf_figure(
            [(0.35, 0.18, 0.0), (1.0, 0.4, 0.0), (args.growth, args.shear, args.coma)],
            ROOT / "docs" / "images" / "stargalaxy_psf_laws.png",
        )
        if RESULTS.exists():
            gain_figure(json.loads(RESULTS.read_text()), IMAGES / "stargalaxy_position_gain.png")
        return
    law = f"g{args.growth:g}_s{args.shear:g}" + (f"_c{args.coma:g}" if args.coma else "")
    train_dir = ROOT / "data" / f"stargalaxy_psf_{law}_train"
    test_dir = ROOT / "data" / f"stargalaxy_psf_{law}_test"
    simulate(train_dir, "train", args.train_fields, args.growth, args.shear, args.coma)
    simulate(test_dir, "test", args.test_fields, args.growth, args.shear, args.coma)
    if args.simulate_only:
        return
    data, test, splits = load_ablation_data(train_dir, test_dir)
    rows = ablation(
        data,
        splits,
        test,
        samples=args.samples,
        epochs=args.epochs,
        variants=tuple(args.variants.split(",")),
        threads=args.threads,
        run_root=ROOT / "runs" / f"stargalaxy_psf_{law}",
    )
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"laws": {}}
    earlier = results["laws"].get(law, {}).get("rows", [])
    rows = [r for r in earlier if r["variant"] not in args.variants.split(",")] + rows
    results["laws"][law] = {
        "date": time.strftime("%Y-%m-%d"),
        "psf_size_growth": args.growth,
        "psf_ellipticity_edge": args.shear,
        "psf_coma_edge": args.coma,
        "train_fields": args.train_fields,
        "test_fields": args.test_fields,
        "test_sources": len(test["label"]),
        "budget": {"samples": args.samples, "epochs": args.epochs},
        "rows": rows,
        "summary": ablation_summary(rows),
    }
    RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    gain_figure(results, IMAGES / "stargalaxy_position_gain.png")
    print(json.dumps(results["laws"][law]["summary"], indent=1, default=float))


if __name__ == "__main__":
    main()
