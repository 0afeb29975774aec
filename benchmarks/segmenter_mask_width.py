"""Why a segmenter's galaxy masks come out too wide: its box, or its mask head? (diagnostic)

Each galaxy detection of the raw detector (score >= 0.5, before any second look) is paired
with the non-star truth instance its 0.5 mask overlaps most. Per truth S/N bin, for all of
them and for those with mask IoU 0.2-0.5 (the kind that counts against Burke et al.'s
figure), the medians of:

- predicted box area / truth footprint's box area, and the two boxes' IoU;
- predicted mask area / truth footprint area, and the fill (mask area / own box area) of each;
- where the predicted mask's pixels lie: on the instance, on other instances, on pixels that
  no truth footprint owns;
- the summed significance of the unowned pixels the mask covers (``sum / sqrt(n)`` in sky
  sigmas, middle band), against a ring of as many free pixels grown around the truth
  footprint: whether the mask spills onto empty sky or onto real light below the truth
  isophote.

Validation seeds only (Burke et al.'s typical fields, simulated when missing). Run:
``.venv/bin/python benchmarks/segmenter_mask_width.py --model segmenter_psf_typical --fields 1024``.
Writes ``benchmarks/results/<model>_mask_width_typical_<n>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from skysift.evaluate.segmentation import mask_iou_matrix
from skysift.models.registry import load_model
from skysift.sim.dataset import write_dataset
from skysift.train.segmenter import load_images, network_images, predict, sample_targets
from skysift.train.segmenter_data import SegmenterSamples, typical_field_configs

ROOT = Path(__file__).resolve().parents[1]
BINS = ((5.0, 20.0), (20.0, 50.0), (50.0, 100.0), (100.0, np.inf))
#: Normalized bands are asinh(x / (4 sigma)), so 4 sinh(band) is the pixel in sky sigmas.
STRETCH = 4.0


def significance(image: np.ndarray, region: np.ndarray) -> float:
    """Summed middle-band signal over ``region`` in sky sigmas, over sqrt(pixels)."""
    n = int(region.sum())
    if n == 0:
        return float("nan")
    band = STRETCH * np.sinh(np.asarray(image[len(image) // 2], dtype=float))
    return float(band[region].sum() / np.sqrt(n))


def ring_of(footprint: np.ndarray, pixels: int, taken: np.ndarray) -> np.ndarray:
    """Free pixels (not ``taken``) in the smallest dilation of ``footprint`` holding at
    least ``pixels`` of them (at most 20 dilations)."""
    grown = footprint
    for _ in range(20):
        grown = ndimage.binary_dilation(grown)
        if (grown & ~taken).sum() >= pixels:
            break
    return grown & ~taken


def box_area(box: np.ndarray) -> float:
    return float(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0.0) * max(h, 0.0)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union else 0.0


def galaxy_rows(sample: dict, prediction: dict, *, star: int) -> list[dict]:
    """One row per galaxy detection (score >= 0.5) on a non-star truth instance."""
    target = sample_targets(sample["labels"], sample["ids"], sample["classes"])
    truth = np.asarray(target["masks"], dtype=bool)
    true_labels = np.asarray(target["labels"])
    true_boxes = np.asarray(target["boxes"])
    kept = np.flatnonzero(np.asarray(prediction["scores"]) >= 0.5)
    if not kept.size or not len(truth):
        return []
    probabilities = np.asarray(prediction["masks"])[kept, 0]
    masks = probabilities >= 0.5
    iou = mask_iou_matrix(masks, truth)
    owned = truth.any(axis=0)
    snr = np.asarray(sample["snr"], dtype=float)
    rows = []
    for j, d in enumerate(kept):
        k = int(np.argmax(iou[j]))
        if iou[j, k] <= 0 or true_labels[k] == star or prediction["labels"][d] == star:
            continue
        mask, box, true_box = masks[j], np.asarray(prediction["boxes"][d]), true_boxes[k]
        area, true_area = int(mask.sum()), int(truth[k].sum())
        spill = mask & ~owned
        rows.append(
            {
                "snr": float(snr[k]),
                "iou": float(iou[j, k]),
                "box_ratio": box_area(box) / max(box_area(true_box), 1.0),
                "box_iou": box_iou(box, true_box),
                "area_ratio": area / max(true_area, 1),
                "fill": area / max(box_area(box), 1.0),
                "true_fill": true_area / max(box_area(true_box), 1.0),
                "on_instance": float((mask & truth[k]).sum() / max(area, 1)),
                "on_others": float((mask & owned & ~truth[k]).sum() / max(area, 1)),
                "on_unowned": float(spill.sum() / max(area, 1)),
                "spill_significance": significance(sample["image"], spill),
                "ring_significance": significance(
                    sample["image"], ring_of(truth[k], int(spill.sum()), owned)
                ),
            }
        )
    return rows


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for low, high in BINS:
        in_bin = [r for r in rows if low <= r["snr"] < high]
        for subset, chosen in (
            ("all", in_bin),
            ("mask IoU 0.2-0.5", [r for r in in_bin if 0.2 <= r["iou"] < 0.5]),
        ):
            if not chosen:
                continue
            keys = [k for k in chosen[0] if k not in ("snr", "iou")]
            medians = {k: float(np.nanmedian([r[k] for r in chosen])) for k in keys}
            out.append({"snr": [low, high], "subset": subset, "n": len(chosen), **medians})
    return out


def markdown(result: dict) -> str:
    lines = [
        f"`{result['model']}`, galaxy detections on {result['images']} typical validation "
        "fields (medians)",
        "",
        "| truth S/N | detections | n | box / truth box | box IoU | mask / truth | fill "
        "(truth) | on instance / others / unowned | spill significance (ring) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["bins"]:
        low, high = r["snr"]
        span = f"{low:g}-{high:g}" if np.isfinite(high) else f">= {low:g}"
        lines.append(
            f"| {span} | {r['subset']} | {r['n']} | {r['box_ratio']:.2f} | {r['box_iou']:.2f} "
            f"| {r['area_ratio']:.2f} | {r['fill']:.2f} ({r['true_fill']:.2f}) "
            f"| {r['on_instance']:.2f} / {r['on_others']:.2f} / {r['on_unowned']:.2f} "
            f"| {r['spill_significance']:.1f} ({r['ring_significance']:.1f}) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="segmenter_psf_typical")
    parser.add_argument("--weights-dir", default=None, help="Model folder (default: shipped).")
    parser.add_argument("--fields", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    directory = ROOT / "data" / f"segmenter_typical_validation_{args.fields}"
    fields = typical_field_configs("validation", args.fields)
    write_dataset(directory, fields, SegmenterSamples(), progress=True, workers=2)
    module, _ = load_model(
        args.model, directory=Path(args.weights_dir) if args.weights_dir else None
    )
    star = module.skysift_config.classes.index("star") + 1
    samples = load_images(str(directory))
    rows = []
    for start in range(0, len(samples), 32):
        chunk = samples[start : start + 32]
        predictions = predict(module, network_images(module, chunk))
        for sample, prediction in zip(chunk, predictions, strict=True):
            rows += galaxy_rows(sample, prediction, star=star)
    result = {"model": args.model, "images": len(samples), "bins": summary(rows)}
    out = ROOT / "benchmarks" / "results" / f"{args.model}_mask_width_typical_{args.fields}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
