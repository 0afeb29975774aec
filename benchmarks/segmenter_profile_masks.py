"""Do profile-fit masks beat the segmenter's own on its galaxies? (diagnostic, validation)

For each galaxy instance the raw detector keeps (score >= 0.5, any galaxy class) on Burke et
al.'s typical validation fields, this benchmark draws its mask again with the classical
estimator of :mod:`skysift.evaluate.profile_fit` (a joint profile fit of the instance and the
instances touching it; groups of more than ``--max-group`` keep the detector's masks) and
measures both masks' IoU with the truth instance they overlap most. Per truth S/N bin it
counts the galaxies whose mask reaches IoU 0.5 (what Burke et al.'s figure counts: below it a
detection is both a false positive and a miss), for the detector's masks, the fitted ones, and
a hybrid that takes the fitted mask only where the fit explains its stamp (reduced chi-square
below ``--max-chi2``). Detections that overlap no truth instance are left out (no mask can
help them).

The same fits give a classical star/galaxy test of the instances the chain calls galaxies:
each isolated one is fitted again as a point source, and the ratio of the two fits' reduced
chi-square is compared between the truth stars and galaxies among them
(:func:`star_separation`).

The truth-informed ceiling of the same question is ``segmenter_mask_ceiling.py``. Validation
seeds only. Run:
``.venv/bin/python benchmarks/segmenter_profile_masks.py --fields 128``.
Writes ``benchmarks/results/<model>_profile_masks_typical_<n>.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from segmenter_mask_ceiling import VALIDATION_FIELDS, pooled_rows, validation_fields

from skysift.evaluate.profile_fit import (
    ProfileMaskSettings,
    fitted_groups,
    group_isophotes,
    sky_and_noise,
    stamp_slices,
)
from skysift.evaluate.segmentation import mask_iou_matrix
from skysift.models.registry import load_model
from skysift.progress import progress_iter
from skysift.sim.dataset import iter_shards
from skysift.train.segmenter import load_images, network_images, predict
from skysift.train.segmenter_data import typical_field_configs

ROOT = Path(__file__).resolve().parents[1]
SNR_BINS = ((5.0, 20.0), (20.0, 50.0), (50.0, 100.0), (100.0, math.inf))
#: The Moffat index of the simulated DECaLS PSF (the typical fields' survey).
PSF_BETA = 3.5


def _simulated(seed: int):
    """The validation field of ``seed``, simulated again (for ``--true-psf``)."""
    from skysift.sim.field import simulate_field

    configs = typical_field_configs("validation", VALIDATION_FIELDS)
    (config,) = [c for c in configs if c.seed == seed]
    return simulate_field(config)


def _psf_at(field):
    """A function giving ``field``'s own detection-band PSF (pixel units) at the centre of a
    mask."""
    scale = field.preset.pixel_scale

    def at(mask: np.ndarray):
        rows, cols = np.nonzero(mask)
        return field.psf.at(float(cols.mean()), float(rows.mean())).dilate(1.0 / scale)

    return at


def column_values(column) -> np.ndarray:
    """A truth-table column as a plain array (without its unit, where it has one)."""
    return np.asarray(getattr(column, "value", column))


def other_light(field, own: np.ndarray, detected: np.ndarray, truth_id: int, *, margin: int):
    """What else shines on the fitted stamp of the instance ``own`` (matched to the truth
    source ``truth_id``): its truth galaxy type, the artifact pixels on the stamp, and the
    truth sources with S/N >= 3 centred on it that no instance covers (not the source itself
    nor its own star-forming clumps)."""
    rows, cols = stamp_slices(own, margin)
    truth = field.truth
    x, y = column_values(truth["x"]), column_values(truth["y"])
    ids, parents = column_values(truth["id"]), column_values(truth["parent_id"])
    on_stamp = (
        (x >= cols.start - 0.5)
        & (x < cols.stop - 0.5)
        & (y >= rows.start - 0.5)
        & (y < rows.stop - 0.5)
        & (column_values(truth["snr"]) >= 3)
        & (ids != truth_id)
        & ~(column_values(truth["is_shred"]).astype(bool) & (parents == truth_id))
    )
    height, width = detected.shape
    r = np.clip(np.rint(y[on_stamp]).astype(int), 0, height - 1)
    c = np.clip(np.rint(x[on_stamp]).astype(int), 0, width - 1)
    (match,) = np.flatnonzero(ids == truth_id)
    return {
        "truth_type": str(truth["galaxy_type"][match]),
        "artifact_pixels": int((field.artifacts.label_map[rows, cols] > 0).sum()),
        "hidden_sources": int((~detected[r, c]).sum()),
    }


def field_rows(job) -> list[dict]:
    """One row per galaxy instance of one field that overlaps a truth instance (a worker's
    job: the detection band, its masked pixels, the detector's masks and galaxy flags, the
    PSF FWHM and the truth)."""
    seed, plane, masked, masks, galaxies, psf_fwhm, truth, truth_ids, truth_stars, snr, options = (
        job
    )
    max_group, true_psf = options
    settings = ProfileMaskSettings(psf_fwhm=psf_fwhm, psf_beta=PSF_BETA)
    field = _simulated(seed) if true_psf else None
    local_psf = _psf_at(field) if field is not None else None
    sources = masks.any(axis=0) if len(masks) else np.zeros(plane.shape, dtype=bool)
    light, sigma = sky_and_noise(plane, ignore=sources | masked)
    fitted, chi2, psf_chi2, group_size = {}, {}, {}, {}
    groups = fitted_groups(
        light,
        sigma,
        list(masks),
        list(galaxies),
        settings=settings,
        masked=masked,
        max_group=max_group,
        psf_at=local_psf,
    )
    for group, drawn, fit_chi2 in groups:
        for k, mask in zip(group, drawn, strict=True):
            if galaxies[k] and mask.any():
                fitted[k], chi2[k], group_size[k] = mask, fit_chi2, len(group)
        if len(group) == 1 and group[0] in fitted:  # the same stamp fitted as a star
            (k,) = group
            as_star = group_isophotes(
                light,
                sigma,
                [masks[k]],
                [False],
                (sources & ~masks[k]) | masked,
                settings=settings,
                psf=local_psf(masks[k]) if local_psf else None,
            )
            if as_star is not None:
                psf_chi2[k] = as_star[1]
    rows = []
    for k in np.flatnonzero(galaxies):
        detector_ious = mask_iou_matrix(masks[k][None], truth)[0]
        best = int(np.argmax(detector_ious))
        if detector_ious[best] <= 0:
            continue
        row = {
            "seed": int(seed),
            "snr": float(snr[best]),
            "area": int(masks[k].sum()),
            "truth_area": int(truth[best].sum()),
            "detector_iou": float(detector_ious[best]),
            "truth_star": bool(truth_stars[best]),
            "fitted": k in fitted,
        }
        if k in fitted:
            row |= {
                "fit_iou": float(mask_iou_matrix(fitted[k][None], truth[best][None])[0, 0]),
                "fit_area": int(fitted[k].sum()),
                "chi2": float(chi2[k]),
                "group": int(group_size[k]),
                "psf_chi2": float(psf_chi2.get(k, np.nan)),
            }
            if field is not None:
                row |= other_light(
                    field, masks[k], sources, int(truth_ids[best]), margin=settings.margin
                )
        rows.append(row)
    return rows


def summary(rows: list[dict], *, max_chi2: float) -> list[dict]:
    """Per truth S/N bin, over the fitted galaxies: median IoU and the count below IoU 0.5
    (and 0.2-0.5) for the detector, the fit, and the chi-square-gated hybrid."""
    out = []
    for low, high in SNR_BINS:
        chosen = [r for r in rows if low <= r["snr"] < high and r["fitted"]]
        if not chosen:
            continue
        det = np.array([r["detector_iou"] for r in chosen])
        fit = np.array([r["fit_iou"] for r in chosen])
        gate = np.array([r["chi2"] < max_chi2 for r in chosen])
        hybrid = np.where(gate, fit, det)
        entry = {
            "snr": [low, high],
            "galaxies": int(sum(low <= r["snr"] < high for r in rows)),
            "fitted": len(chosen),
            "hybrid_uses_fit": int(gate.sum()),
        }
        for who, iou in (("detector", det), ("fit", fit), ("hybrid", hybrid)):
            entry |= {
                f"{who}_median_iou": float(np.median(iou)),
                f"{who}_below_0.5": int(np.sum(iou < 0.5)),
                f"{who}_0.2_to_0.5": int(np.sum((iou >= 0.2) & (iou < 0.5))),
            }
        out.append(entry)
    return out


#: Ratios of the reduced chi-square of a PSF fit to that of a galaxy fit, below which an
#: isolated instance looks like a star.
STAR_RATIOS = (1.01, 1.02, 1.05, 1.1, 1.2)


def star_separation(rows: list[dict], *, min_snr: float = 20.0) -> dict:
    """Among the isolated galaxy instances matched (IoU >= 0.5) to a truth instance with S/N
    >= ``min_snr``: how many are truth stars and galaxies, and for each ratio of
    :data:`STAR_RATIOS` the share of each whose PSF fit is within that ratio of its galaxy
    fit (a classical star/galaxy test, as SDSS's PSF-minus-model magnitude)."""
    chosen = [
        r
        for r in rows
        if r["snr"] >= min_snr
        and r["detector_iou"] >= 0.5
        and r.get("group") == 1
        and np.isfinite(r.get("psf_chi2", np.nan))
    ]
    ratio = np.array([r["psf_chi2"] / r["chi2"] for r in chosen])
    star = np.array([r["truth_star"] for r in chosen], dtype=bool)
    return {
        "min_snr": min_snr,
        "stars": int(star.sum()),
        "galaxies": int((~star).sum()),
        "ratios": {
            f"{t:g}": {
                "stars_below": float(np.mean(ratio[star] < t)) if star.any() else None,
                "galaxies_below": float(np.mean(ratio[~star] < t)) if (~star).any() else None,
            }
            for t in STAR_RATIOS
        },
    }


def markdown(result: dict) -> str:
    """The summary as a table; each cell: detector / fit / hybrid."""
    cells = [("median_iou", "median IoU", "{:.3f}"), ("below_0.5", "IoU < 0.5", "{}")]
    cells.append(("0.2_to_0.5", "IoU 0.2-0.5", "{}"))
    header = "| truth S/N | galaxy instances on a source | fitted | " + " | ".join(
        f"{title}: detector / fit / hybrid" for _, title, _ in cells
    )
    table = [header + " |", "|---" * (3 + len(cells)) + "|"]
    for b in result["bins"]:
        low, high = b["snr"]
        label = f"{low:g}-{high:g}" if math.isfinite(high) else f">= {low:g}"
        values = [
            " / ".join(fmt.format(b[f"{who}_{key}"]) for who in ("detector", "fit", "hybrid"))
            for key, _, fmt in cells
        ]
        table.append(f"| {label} | {b['galaxies']} | {b['fitted']} | " + " | ".join(values) + " |")
    return "\n".join(table)


def star_markdown(separation: dict) -> str:
    """:func:`star_separation` as a table: per ratio, the share of stars and of galaxies
    below it."""
    ratios = list(separation["ratios"])
    lines = [
        f"Isolated galaxy instances matched at S/N >= {separation['min_snr']:g}: "
        f"{separation['stars']} truth stars, {separation['galaxies']} truth galaxies",
        "",
        "| reduced chi-square ratio PSF / galaxy fit below | " + " | ".join(ratios) + " |",
        "|---" * (1 + len(ratios)) + "|",
    ]
    for group in ("stars", "galaxies"):
        shares = [separation["ratios"][t][f"{group}_below"] for t in ratios]
        cells = ["-" if v is None else f"{100 * v:.1f} %" for v in shares]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="segmenter_psf_typical")
    parser.add_argument("--fields", type=int, default=128, help="At most 1,024.")
    parser.add_argument(
        "--max-group", type=int, default=1, help="Largest group of touching instances fitted."
    )
    parser.add_argument(
        "--max-chi2",
        type=float,
        default=1.1,
        help="The hybrid takes a fitted mask when its stamp's reduced chi-square is below this.",
    )
    parser.add_argument(
        "--true-psf",
        action="store_true",
        help="Fit with the simulator's own PSF at each group instead of a Moffat of the "
        "field's FWHM (what a perfect PSF model would give), and record what else shines on "
        "each fitted stamp (other_light); adds _truepsf to the name.",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not 1 <= args.fields <= VALIDATION_FIELDS:
        parser.error(f"--fields must be 1-{VALIDATION_FIELDS}; got {args.fields}")
    if args.max_group < 1:
        parser.error(f"--max-group must be >= 1; got {args.max_group}")
    import torch

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    directory, configs = validation_fields(args.fields)
    seeds = [c.seed for c in configs]
    module, _ = load_model(args.model)
    classes = module.skysift_config.classes
    samples = {s["seed"]: s for s in load_images(str(directory), seeds=seeds)}
    jobs = []
    for shard in progress_iter(
        iter_shards(str(directory), seeds=seeds), "segmenting", total=len(seeds), enabled=True
    ):
        seed = int(shard["seed"][0])
        sample = samples[seed]
        (prediction,) = predict(module, network_images(module, [sample]))
        kept = np.asarray(prediction["scores"]) >= 0.5
        masks = np.asarray(prediction["masks"])[kept, 0] >= 0.5
        galaxies = np.array([classes[int(k) - 1] != "star" for k in prediction["labels"][kept]])
        truth = np.stack([sample["labels"] == i for i in sample["ids"]])
        det = 1  # the detection band, r, is the middle one of g, r, z
        jobs.append(
            (
                seed,
                np.asarray(shard["image"][0][det], dtype=np.float64),
                shard["mask"][0].astype(bool),
                masks,
                galaxies,
                sample["psf_fwhm"],
                truth,
                np.asarray(sample["ids"]),
                np.asarray(sample["classes"]) == classes.index("star") + 1,
                np.asarray(sample["snr"]),
                (args.max_group, args.true_psf),
            )
        )
    rows = pooled_rows(field_rows, jobs, threads=args.threads)
    result = {
        "model": args.model,
        "fields": args.fields,
        "max_group": args.max_group,
        "max_chi2": args.max_chi2,
        "true_psf": args.true_psf,
        "seconds": round(time.perf_counter() - started, 1),
        "bins": summary(rows, max_chi2=args.max_chi2),
        "stars_typed_galaxy": star_separation(rows),
        "rows": rows,
    }
    name = f"{args.model}_profile_masks_typical_{args.fields}"
    if args.max_group != 1:
        name += f"_group{args.max_group}"
    if args.true_psf:
        name += "_truepsf"
    out = ROOT / "benchmarks" / "results" / f"{name}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))
    print()
    print(star_markdown(result["stars_typed_galaxy"]))


if __name__ == "__main__":
    main()
