"""Does the confidence of a mask rank Burke et al.'s galaxies better? (validation, diagnostic)

Session 28 found that the false galaxies left above the 80 % recall rank are mostly faint
galaxies whose masks (drawn in boxes about twice too large) reach a truth IoU of only
0.2-0.5. A mask drawn with little confidence has probabilities near 0.5 over much of its
area; with test-time augmentation (``--augment flips``) the fused mask is the mean of four
views, so where the views disagree on the outline it is near 0.5 too. This script scales
each instance's ranking score by its **maskness** (the mean mask probability over the
pixels at 0.5 or more; SOLOv2 ranks its masks so) to a power, and measures the figure on
the validation fields for each power, with the instances and their paint order unchanged:
only the ranking moves.

Run: ``.venv/bin/python benchmarks/segmenter_maskness.py --model segmenter_psf_typical
--second-look second_look_reject --star-fraction 0.27 --shreds shred --fields 1024
--augment flips``. Writes ``benchmarks/results/<chain>_maskness_typical_<n>.json`` and prints
a markdown table. Validation seeds only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from burke_figure import add_mask_box_options
from segmenter_limits import IMAGE_SETS, add_chain_options, chain_from_args, chain_name

from skysift.evaluate.segmentation import as_catalog, precision_at_recall_by_snr
from skysift.progress import progress_iter
from skysift.sim.dataset import write_dataset
from skysift.train.segmenter import load_images, refined_predictions, sample_targets
from skysift.train.segmenter_data import SegmenterSamples

ROOT = Path(__file__).resolve().parents[1]


def maskness(probabilities: np.ndarray) -> np.ndarray:
    """Per instance of ``(n, 1, H, W)`` mask probabilities, their mean over the pixels at
    0.5 or more (1 for an instance without any)."""
    flat = np.asarray(probabilities, dtype=np.float32).reshape(len(probabilities), -1)
    inside = flat >= 0.5
    count = inside.sum(axis=1)
    total = np.where(inside, flat, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), 1.0)


def compact_catalog(prediction: dict) -> dict:
    """The painted catalog of a prediction with each instance's maskness, its masks kept as
    booleans (a quarter of the memory of float32)."""
    catalog = as_catalog(prediction | {"maskness": maskness(prediction["masks"])})
    catalog["masks"] = np.asarray(catalog["masks"]) >= 0.5
    return catalog


def ranked_by(catalog: dict, power: float) -> dict:
    """``catalog`` with its ranking score times its maskness to ``power``."""
    ranking = np.asarray(catalog.get("detection_scores", catalog["scores"]), dtype=float)
    return catalog | {"detection_scores": ranking * np.asarray(catalog["maskness"]) ** power}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_chain_options(parser)
    add_mask_box_options(parser)
    parser.add_argument("--fields", type=int, default=None)
    parser.add_argument("--powers", default="0,1,2,4,8")
    parser.add_argument("--cuts", default="20,50,100")
    parser.add_argument("--chunk", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    name, configs, n = IMAGE_SETS["typical"]
    suffix = ""
    if args.fields is not None and args.fields != n:
        n, suffix = args.fields, f"_{args.fields}"
    directory = ROOT / "data" / (name + suffix)
    write_dataset(directory, configs("validation", n), SegmenterSamples(), progress=True, workers=2)
    module, typer, look, shreds = chain_from_args(args)
    samples = load_images(str(directory))
    catalogs = []
    starts = range(0, len(samples), args.chunk)
    for start in progress_iter(starts, f"segmenting {args.chunk} fields at a time"):
        predictions = refined_predictions(
            module,
            samples[start : start + args.chunk],
            galaxy_typer=typer,
            second_look=look,
            star_fraction=args.star_fraction,
            shreds=shreds,
            mask_box_scale=args.mask_box_scale,
            mask_box_side=args.mask_box_side,
            augment=args.augment,
        )
        catalogs += [compact_catalog(p) for p in predictions]
    targets = [sample_targets(s["labels"], s["ids"], s["classes"]) for s in samples]
    snr = [np.asarray(s["snr"], dtype=float) for s in samples]
    unmasked = [s["unmasked"] for s in samples]
    classes = module.skysift_config.classes
    cuts = tuple(float(v) for v in args.cuts.split(","))
    rows = []
    for power in (float(v) for v in args.powers.split(",")):
        figure = precision_at_recall_by_snr(
            [ranked_by(c, power) for c in catalogs],
            targets,
            snr,
            classes,
            cuts=cuts,
            unmasked=unmasked,
        )
        rows.append({"power": power, "figure": figure})
    chain = chain_name(args) + (f"_{args.augment}" if args.augment else "")
    result = {"model": chain, "images": len(samples), "powers": rows}
    out = ROOT / "benchmarks" / "results" / f"{chain}_maskness_typical{suffix}.json"
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(f"{chain}, {len(samples)} validation typical fields, precision at 80 % recall")
    print("(max recall) at S/N >= " + " / ".join(f"{c:g}" for c in cuts) + "\n")
    print("| maskness power | galaxies | stars |\n|---|---|---|")
    for row in rows:
        cells = [
            " / ".join(
                f"{r[f'{group}_precision']:.3f} ({r[f'{group}_max_recall']:.2f})"
                for r in row["figure"]
            )
            for group in ("galaxy", "star")
        ]
        print(f"| {row['power']:g} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
