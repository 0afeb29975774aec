"""How well can a faint galaxy's truth mask be drawn from its noisy image at all? (ceiling)

The segmenter's truth mask of a source is the isophote of its noiseless light at 2 sigma of
the sky noise (``FOOTPRINT_NSIGMA``). On a faint galaxy that edge lies where the profile is
two sky sigmas per pixel, so it has to be inferred from the whole profile, seen through the
noise. This benchmark asks what an estimator with far more knowledge than the network gets:
for every isolated single-Sersic galaxy (``disk``, ``elliptical``, ``compact``: one profile,
the same shape in every band) of Burke et al.'s typical validation fields, it

- removes every other source's noiseless light and the true background from the image (a
  perfect deblender and sky),
- fits the galaxy's own profile family, with its true Sersic index and the true PSF at its
  position, to the g, r and z pixels jointly (position, half-light radius, shear and one
  flux per band free), by least squares started at the true parameters,
- draws the fitted profile without noise and takes its 2-sigma isophote in the detection band,

and measures that mask's IoU with the truth mask, beside the best mask IoU of the raw
detector's instances (score >= 0.5, any class) on the same galaxy. A galaxy is *isolated*
when its truth mask is its own isophote (IoU >= 0.95 between the two), so that no
neighbour owns part of it. The summary counts only galaxies whose stamp holds no artifact
pixel: those pixels get no weight, and a fit's free flux can hide in them (the rows keep
every isolated galaxy, with ``artifact_pixels``). The fraction of galaxies with IoU < 0.5 is
what counts against Burke et al.'s figure (a detection there is both a false positive and a
miss). The fit a pipeline can make, without truth, is measured by
``segmenter_profile_masks.py``.

Validation seeds only. Run:
``.venv/bin/python benchmarks/segmenter_mask_ceiling.py --fields 256``.
Writes ``benchmarks/results/<model>_mask_ceiling_typical_<n><tag>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from skysift.evaluate.segmentation import mask_iou_matrix
from skysift.models.registry import load_model
from skysift.progress import progress_iter
from skysift.sim.dataset import write_dataset
from skysift.sim.field import simulate_field
from skysift.train.segmenter import load_images, network_images, predict
from skysift.train.segmenter_data import (
    FOOTPRINT_NSIGMA,
    SegmenterSamples,
    typical_field_configs,
)

ROOT = Path(__file__).resolve().parents[1]
#: Galaxy types drawn as one Sersic profile (see ``skysift.sim.sources.make_galaxy``).
SINGLE_PROFILE_TYPES = ("disk", "elliptical", "compact")
SNR_BINS = ((20.0, 50.0), (50.0, 100.0), (100.0, math.inf))
ISOLATED_IOU = 0.95
VALIDATION_FIELDS = 1024


class ProfileModel:
    """One galaxy's PSF-convolved Sersic light in every band, on a fixed stamp."""

    def __init__(self, field, x: float, y: float, bounds, *, sersic_n: float) -> None:
        import galsim

        preset = field.preset
        self.bounds = galsim.BoundsI(*(int(b) for b in bounds))
        self.scale = preset.pixel_scale
        self.gain = preset.gain
        self.psfs = [
            field.psf.at(x, y, fwhm_scale=preset.fwhm_in_band(1.0, b)) for b in preset.band_names
        ]
        self.unit = (
            galsim.Exponential(half_light_radius=1.0)
            if sersic_n == 1.0
            else galsim.Sersic(n=sersic_n, half_light_radius=1.0)
        )

    def draw(self, params: np.ndarray) -> np.ndarray:
        """``(bands, rows, cols)`` ADU for ``[x, y, log hlr, eta1, eta2, log flux per band]``
        (``eta``: GalSim's conformal shear, ``ln(1 / axis ratio)``, unbounded)."""
        import galsim

        x, y, log_hlr, eta1, eta2 = params[:5]
        shape = self.unit.dilate(math.exp(log_hlr)).shear(eta1=eta1, eta2=eta2)
        out = []
        for psf, log_flux in zip(self.psfs, params[5:], strict=True):
            stamp = galsim.ImageF(self.bounds, scale=self.scale)
            galsim.Convolve(shape.withFlux(math.exp(log_flux)), psf).drawImage(
                image=stamp, method="no_pixel", center=galsim.PositionD(x, y)
            )
            out.append(stamp.array / self.gain)
        return np.stack(out)


def _plain(value) -> float:
    """A truth-table value without its unit (arcsec, degrees, ADU as the table gives)."""
    return float(getattr(value, "value", value))


def true_parameters(row, bands: list[str], gain: float) -> np.ndarray:
    """The truth table's values in :meth:`ProfileModel.draw`'s parametrization."""
    eta = -math.log(_plain(row["axis_ratio"]))
    beta = math.radians(_plain(row["position_angle"]))
    flux_e = [_plain(row[f"flux_{b}"]) * gain for b in bands]
    return np.array(
        [
            _plain(row["x"]),
            _plain(row["y"]),
            math.log(_plain(row["hlr"])),
            eta * math.cos(2 * beta),
            eta * math.sin(2 * beta),
            *(math.log(max(f, 1e-3)) for f in flux_e),
        ]
    )


def fit_profile(
    model: ProfileModel,
    data: np.ndarray,
    weight: np.ndarray,
    start: np.ndarray,
    *,
    size_factor: float = 10.0,
):
    """Least-squares profile parameters, started at ``start``: the centre within 3 pixels of
    it, the size within ``size_factor`` of it, the axis ratio above 0.05 (GalSim would
    otherwise be asked for an enormous FFT by a wandering step)."""
    from scipy.optimize import least_squares

    def residuals(params: np.ndarray) -> np.ndarray:
        return ((data - model.draw(params)) * weight).ravel()

    spread = np.array([3.0, 3.0, math.log(size_factor), 3.0, 3.0] + [np.inf] * (start.size - 5))
    lower, upper = start - spread, start + spread
    lower[3:5], upper[3:5] = -3.0, 3.0
    result = least_squares(
        residuals,
        np.clip(start, lower + 1e-9, upper - 1e-9),
        bounds=(lower, upper),
        x_scale="jac",
        diff_step=1e-4,
        max_nfev=120,
    )
    return result.x, float(result.cost)


def galaxy_rows(field, seed: int, masks: np.ndarray, *, margin: int = 6) -> list[dict]:
    """One row per isolated single-profile galaxy with S/N >= 20 of ``field``; ``masks``
    are the detector's instance masks on it."""
    preset = field.preset
    bands = list(preset.band_names)
    det = bands.index(preset.detection_band)
    threshold = FOOTPRINT_NSIGMA * field.noise_sigma
    data = np.asarray(field.image.data, dtype=np.float64) - field.background
    # artifacts and masked pixels carry no weight in the fit (the estimator knows them too)
    bad = (field.artifacts.label_map > 0) | np.asarray(field.image.mask, dtype=bool)
    truth = field.truth
    height, width = field.footprints.shape
    rows = []
    selected = (
        (np.asarray(truth["snr"]) >= SNR_BINS[0][0])
        & np.isin(np.asarray(truth["galaxy_type"]), SINGLE_PROFILE_TYPES)
        & ~np.asarray(truth["is_shred"])
    )
    for index in np.flatnonzero(selected):
        row = truth[index]
        footprint = field.footprints == int(row["id"])
        if not footprint.any():
            continue
        ys, xs = np.nonzero(footprint)
        pad = margin + max(np.ptp(ys), np.ptp(xs)) // 2
        x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad, width - 1)
        y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad, height - 1)
        cut = (slice(None), slice(y0, y1 + 1), slice(x0, x1 + 1))
        model = ProfileModel(
            field,
            _plain(row["x"]),
            _plain(row["y"]),
            (x0, x1, y0, y1),
            sersic_n=_plain(row["sersic_n"]),
        )
        start = true_parameters(row, bands, preset.gain)
        own = model.draw(start)
        isophote = own[det] >= threshold[det][cut[1:]]
        stamp_truth = footprint[cut[1:]]
        if mask_iou_matrix(isophote[None], stamp_truth[None])[0, 0] < ISOLATED_IOU:
            continue
        others = field.noiseless[cut] - own
        variance = field.noise_sigma[cut] ** 2 + np.maximum(own, 0.0) / preset.gain
        weight = np.where(bad[cut[1:]], 0.0, 1.0 / np.sqrt(variance))
        fitted = model.draw(fit_profile(model, data[cut] - others, weight, start)[0])
        fitted_mask = np.zeros_like(footprint)
        fitted_mask[cut[1:]] = fitted[det] >= threshold[det][cut[1:]]
        fit_iou = float(mask_iou_matrix(fitted_mask[None], footprint[None])[0, 0])
        detector_ious = (
            mask_iou_matrix(masks, footprint[None])[:, 0] if masks.shape[0] else np.zeros(0)
        )
        detector_iou = float(detector_ious.max(initial=0.0))
        rows.append(
            {
                "seed": seed,
                "id": int(row["id"]),
                "type": str(row["galaxy_type"]),
                "snr": float(row["snr"]),
                "area": int(footprint.sum()),
                "artifact_pixels": int(bad[cut[1:]].sum()),
                "fit_iou": fit_iou,
                "fit_area_ratio": float(fitted_mask.sum() / footprint.sum()),
                "detector_iou": detector_iou,
            }
        )
    return rows


def field_rows(job) -> list[dict]:
    """:func:`galaxy_rows` of one field, simulated again from its config (a worker's job)."""
    config, masks = job
    return galaxy_rows(simulate_field(config), config.seed, masks)


def summary(rows: list[dict]) -> list[dict]:
    """Per S/N bin: counts, median IoUs and the share below IoU 0.5 (and 0.2-0.5)."""
    out = []
    for low, high in SNR_BINS:
        # a fit's free flux can hide in artifact pixels (weight 0): clean stamps only
        chosen = [r for r in rows if low <= r["snr"] < high and not r["artifact_pixels"]]
        if not chosen:
            continue
        fit = np.array([r["fit_iou"] for r in chosen])
        det = np.array([r["detector_iou"] for r in chosen])
        out.append(
            {
                "snr": [low, high],
                "galaxies": len(chosen),
                "fit_median_iou": float(np.median(fit)),
                "detector_median_iou": float(np.median(det)),
                "fit_below_0.5": float(np.mean(fit < 0.5)),
                "detector_below_0.5": float(np.mean(det < 0.5)),
                "fit_0.2_to_0.5": float(np.mean((fit >= 0.2) & (fit < 0.5))),
                "detector_0.2_to_0.5": float(np.mean((det >= 0.2) & (det < 0.5))),
                "fit_area_ratio_median": float(np.median([r["fit_area_ratio"] for r in chosen])),
                "by_type": {
                    kind: {
                        "galaxies": int(sum(r["type"] == kind for r in chosen)),
                        "fit_below_0.5": float(
                            np.mean([r["fit_iou"] < 0.5 for r in chosen if r["type"] == kind])
                        ),
                        "detector_below_0.5": float(
                            np.mean([r["detector_iou"] < 0.5 for r in chosen if r["type"] == kind])
                        ),
                    }
                    for kind in SINGLE_PROFILE_TYPES
                    if any(r["type"] == kind for r in chosen)
                },
            }
        )
    return out


def _snr_label(low: float, high: float) -> str:
    return f"{low:g}-{high:g}" if math.isfinite(high) else f">= {low:g}"


def markdown(result: dict) -> str:
    """The summary as a table; each cell: truth-started fit / detector."""
    cells = [
        ("median_iou", "median IoU"),
        ("below_0.5", "IoU < 0.5"),
        ("0.2_to_0.5", "IoU 0.2-0.5"),
    ]
    header = "| truth S/N | isolated single-profile galaxies | " + " | ".join(
        f"{title}: fit / detector" for _, title in cells
    )
    table = [header + " |", "|---" * (2 + len(cells)) + "|"]
    for b in result["bins"]:
        values = [
            " / ".join(f"{b[f'{who}_{key}']:.3f}" for who in ("fit", "detector"))
            for key, _ in cells
        ]
        table.append(f"| {_snr_label(*b['snr'])} | {b['galaxies']} | " + " | ".join(values) + " |")
    return "\n".join(table)


def validation_fields(count: int) -> tuple[Path, list]:
    """The folder of the 1,024 typical validation fields the segmenter benchmarks share
    (simulated when missing) and the configs of the first ``count`` of them."""
    configs = typical_field_configs("validation", VALIDATION_FIELDS)
    directory = ROOT / "data" / f"segmenter_typical_validation_{VALIDATION_FIELDS}"
    write_dataset(directory, configs, SegmenterSamples(), progress=True, workers=2)
    return directory, configs[:count]


def pooled_rows(function, jobs: list, *, threads: int) -> list[dict]:
    """The rows ``function`` gives for each job, joined, from ``threads`` processes."""
    rows = []
    with ProcessPoolExecutor(threads) as pool:
        for found in progress_iter(
            pool.map(function, jobs), "fitting galaxies", total=len(jobs), enabled=True
        ):
            rows += found
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="segmenter_psf_typical")
    parser.add_argument("--weights-dir", default=None, help="Model folder (default: shipped).")
    parser.add_argument("--fields", type=int, default=256, help="At most 1,024.")
    parser.add_argument("--tag", default="", help="Suffix of the results file.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not 1 <= args.fields <= VALIDATION_FIELDS:
        parser.error(f"--fields must be 1-{VALIDATION_FIELDS}; got {args.fields}")
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    directory, configs = validation_fields(args.fields)
    module, _ = load_model(
        args.model, directory=Path(args.weights_dir) if args.weights_dir else None
    )
    samples = {s["seed"]: s for s in load_images(str(directory), seeds=[c.seed for c in configs])}
    jobs = []
    for config in progress_iter(configs, "segmenting", enabled=True):
        (prediction,) = predict(module, network_images(module, [samples[config.seed]]))
        kept = np.asarray(prediction["scores"]) >= 0.5
        jobs.append((config, np.asarray(prediction["masks"])[kept, 0] >= 0.5))
    rows = pooled_rows(field_rows, jobs, threads=args.threads)
    result = {
        "model": args.model,
        "fields": args.fields,
        "galaxies": len(rows),
        "seconds": round(time.perf_counter() - started, 1),
        "bins": summary(rows),
        "rows": rows,
    }
    out = (
        ROOT
        / "benchmarks"
        / "results"
        / f"{args.model}_mask_ceiling_typical_{args.fields}{args.tag}.json"
    )
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
