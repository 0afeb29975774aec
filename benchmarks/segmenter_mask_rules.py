"""Rules applied to the segmenter's detections before the label map, measured on validation
(diagnostic; none is adopted, see docs/models.md, session 18).

Each rule is a candidate fix for the false galaxies that keep Burke et al.'s galaxy figure
below 0.98 (session 17: masks about twice their faint source's footprint, and pieces inside
bright galaxies ranked above the galaxy's own detection):

- ``isophote``: each mask cut to the pixels where the Gaussian-smoothed detection-band
  significance reaches a threshold (the truth masks are the 2-sigma isophote of the
  noiseless light), unless fewer than 4 pixels would be left;
- ``nested``: a galaxy detection whose mask lies mostly inside a galaxy detection at least
  ``ratio`` times larger is dropped (a piece of that galaxy);
- ``maskness``: the ranking score times the mean mask probability over the mask's pixels
  (SOLOv2's "maskness"), so that detections with unsure masks rank lower;
- ``owner``: a contested pixel goes to the instance with the highest mask probability there
  (optionally times its score), as the truth footprints give a pixel to the source that
  brings the most light, instead of to the most confident instance; an instance left with
  less than half its mask is dropped, as the label map does (session 21).

Validation seeds only (the segmenter's 64 validation images and Burke et al.'s 48 typical
validation fields, simulated when missing). Run:
``.venv/bin/python benchmarks/segmenter_mask_rules.py --second-look second_look_reject``.
Writes ``benchmarks/results/<model>[_<look>]_mask_rules.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import ndimage

from skysift.evaluate.segmentation import (
    as_catalog,
    detection_map,
    mask_iou_matrix,
    precision_at_recall_by_snr,
)
from skysift.models.registry import load_model
from skysift.morphology import GalaxyTyper
from skysift.second_look import SecondLook
from skysift.segment import MIN_KEPT_FRACTION
from skysift.sim.dataset import write_dataset
from skysift.train.segmenter import SOFTENING, load_images, refined_predictions, sample_targets
from skysift.train.segmenter_data import SegmenterSamples

ROOT = Path(__file__).resolve().parents[1]
CUTS = (20.0, 50.0, 100.0)
#: Index of the detection band (r) in the segmenter images' bands (SDSS g,r,i; DECaLS g,r,z).
DETECTION_BAND = 1


def significance(sample: dict) -> np.ndarray:
    """Detection-band pixel significance (sky sigmas) from the network's asinh input."""
    return SOFTENING * np.sinh(sample["image"][DETECTION_BAND].astype(np.float64))


def isophote_rule(sigma: float, threshold: float) -> Callable[[dict, dict], dict]:
    def rule(prediction: dict, sample: dict) -> dict:
        if not len(prediction["scores"]):
            return prediction
        light = significance(sample)
        inside = (ndimage.gaussian_filter(light, sigma) if sigma else light) >= threshold
        masks = np.asarray(prediction["masks"]).copy()
        cut = (masks[:, 0] >= 0.5) & inside
        boxes = np.asarray(prediction["boxes"], dtype=np.float32).copy()
        for k in np.flatnonzero(cut.reshape(len(cut), -1).sum(axis=1) >= 4):
            masks[k, 0] = np.where(inside, masks[k, 0], 0.0)
            rows, cols = np.nonzero(cut[k])
            boxes[k] = [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
        return {**prediction, "masks": masks, "boxes": boxes}

    return rule


def nested_rule(star: int, inside: float, ratio: float) -> Callable[[dict, dict], dict]:
    def rule(prediction: dict, sample: dict) -> dict:
        n = len(prediction["scores"])
        if n < 2:
            return prediction
        masks = np.asarray(prediction["masks"])[:, 0] >= 0.5
        area = masks.reshape(n, -1).sum(axis=1).astype(float)
        iou = mask_iou_matrix(masks, masks)
        # |A & B| / |A| from the IoU: inter = iou * (|A| + |B|) / (1 + iou)
        inter = iou * (area[:, None] + area[None, :]) / (1.0 + iou)
        galaxy = np.asarray(prediction["labels"]) != star
        contained = inter / np.maximum(area[:, None], 1.0) >= inside
        larger = area[None, :] >= ratio * area[:, None]
        np.fill_diagonal(contained, False)
        drop = galaxy & (contained & larger & galaxy[None, :]).any(axis=1)
        keep = np.flatnonzero(~drop)
        return {key: np.asarray(value)[keep] for key, value in prediction.items()}

    return rule


def maskness_rule(power: float) -> Callable[[dict, dict], dict]:
    def rule(prediction: dict, sample: dict) -> dict:
        if not len(prediction["scores"]):
            return prediction
        probability = np.asarray(prediction["masks"])[:, 0]
        on = probability >= 0.5
        mean = (probability * on).sum(axis=(1, 2)) / np.maximum(on.sum(axis=(1, 2)), 1)
        ranking = np.asarray(prediction.get("detection_scores", prediction["scores"]))
        return {**prediction, "detection_scores": ranking * mean**power}

    return rule


def owner_rule(score_weighted: bool) -> Callable[[dict, dict], dict]:
    def rule(prediction: dict, sample: dict) -> dict:
        n = len(prediction["scores"])
        if n < 2:
            return prediction
        probability = np.asarray(prediction["masks"])[:, 0]
        on = probability >= 0.5
        weight = np.asarray(prediction["scores"], dtype=np.float32) if score_weighted else 1.0
        priority = np.where(on, probability * np.reshape(weight, (-1, 1, 1)), -1.0)
        owner = np.where(on.any(axis=0), priority.argmax(axis=0), -1)
        owned = owner[np.newaxis] == np.arange(n)[:, None, None]
        kept_area = owned.reshape(n, -1).sum(axis=1)
        own_area = on.reshape(n, -1).sum(axis=1)
        keep = np.flatnonzero((kept_area > 0) & (kept_area >= MIN_KEPT_FRACTION * own_area))
        out = {key: np.asarray(value)[keep] for key, value in prediction.items()}
        out["masks"] = owned[keep][:, np.newaxis].astype(np.float32)
        return out

    return rule


def scored(predictions, samples, targets, classes) -> dict:
    catalogs = [as_catalog(p) for p in predictions]
    rows = precision_at_recall_by_snr(
        catalogs,
        targets,
        [np.asarray(s["snr"], dtype=float) for s in samples],
        classes,
        cuts=CUTS,
        unmasked=[s["unmasked"] for s in samples],
    )
    return {"catalog_mask_map_50": detection_map(catalogs, targets)["mask_map_50"], "cuts": rows}


def _cell(row: dict, group: str) -> str:
    precision = row[f"{group}_precision"]
    shown = "not reached" if np.isnan(precision) else f"{precision:.3f}"
    return f"{shown} ({row[f'{group}_max_recall']:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="segmenter_psf")
    parser.add_argument("--second-look", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--rules", default="", help="Measure only the rules whose name contains this text."
    )
    parser.add_argument("--tag", default="", help="Appended to the results file's name.")
    args = parser.parse_args()
    import torch
    from segmenter_limits import IMAGE_SETS

    torch.set_num_threads(args.threads)
    module, _ = load_model(args.model)
    classes = module.skysift_config.classes
    star = classes.index("star") + 1
    look = SecondLook(args.second_look) if args.second_look else None
    rules = {"none": lambda prediction, sample: prediction}
    for sigma in (0.0, 1.5):
        for threshold in (1.0, 2.0):
            rules[f"isophote sigma {sigma:g}, {threshold:g} sky sigma"] = isophote_rule(
                sigma, threshold
            )
    for inside in (0.6, 0.8):
        for ratio in (1.5, 3.0):
            rules[f"nested {inside:g} inside, {ratio:g}x larger"] = nested_rule(star, inside, ratio)
    for power in (1.0, 4.0):
        rules[f"maskness^{power:g}"] = maskness_rule(power)
    rules["owner: highest mask probability"] = owner_rule(score_weighted=False)
    rules["owner: highest mask probability x score"] = owner_rule(score_weighted=True)
    rules = {
        rule_name: rule
        for rule_name, rule in rules.items()
        if rule_name == "none" or args.rules in rule_name
    }
    result: dict = {"model": args.model, "second_look": args.second_look, "image_sets": {}}
    for image_set, (name, configs, n) in sorted(IMAGE_SETS.items()):
        directory = ROOT / "data" / name
        write_dataset(directory, configs("validation", n), SegmenterSamples(), progress=True)
        samples = load_images(str(directory))
        targets = [sample_targets(s["labels"], s["ids"], s["classes"]) for s in samples]
        predictions = refined_predictions(
            module, samples, galaxy_typer=GalaxyTyper(), second_look=look
        )
        result["image_sets"][image_set] = {
            rule_name: scored(
                [rule(p, s) for p, s in zip(predictions, samples, strict=True)],
                samples,
                targets,
                classes,
            )
            for rule_name, rule in rules.items()
        }
    name = args.model + (f"_{args.second_look}" if args.second_look else "")
    tag = f"_{args.tag}" if args.tag else ""
    out = ROOT / "benchmarks" / "results" / f"{name}_mask_rules{tag}.json"
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    cuts = " / ".join(f"{c:g}" for c in CUTS)
    lines = [
        f"| images | rule | catalog mask mAP@0.5 | galaxies (S/N >= {cuts}) | stars |",
        "|---|---|---|---|---|",
    ]
    for image_set, by_rule in result["image_sets"].items():
        for rule_name, value in by_rule.items():
            galaxies = " / ".join(_cell(row, "galaxy") for row in value["cuts"])
            stars = " / ".join(_cell(row, "star") for row in value["cuts"])
            lines.append(
                f"| {image_set} | {rule_name} | {value['catalog_mask_map_50']:.3f} | "
                f"{galaxies} | {stars} |"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
