"""What test-time augmentation does to a segmenter's instances (``SegmentConfig.augment``).

The model card's metrics of one segmenter, measured with its detector run once and with
the views of each augmentation fused (:mod:`skysift.segment_augment`): box and mask mAP of
every instance (COCO, torchmetrics), the central galaxies' mask mAP, how many of them were
segmented, their spiral/elliptical accuracy and centroid offset, and the time taken. The
classes are the detector's own (as in the card), so only the detector changes.

Choose on the validation images (``--images validation``, the 64 the training kept its best
step on); measure the choice once on the held-out ones (``--images test``, the card's 128).
Run: ``.venv/bin/python benchmarks/segmenter_augment.py --model segmenter_psf_typical
--images validation --augment none,flips,d4``. Writes
``benchmarks/results/<model>_augment_<images>.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from skysift.models.registry import load_model
from skysift.train.segmenter import evaluate_segmenter, load_images, raw_images

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"validation": "segmenter_val", "test": "segmenter_test"}


def summary(metrics: dict, seconds: float) -> dict:
    central = metrics["central"]
    return {
        "mask_map_50": metrics["mask_map_50"],
        "mask_map": metrics["mask_map"],
        "box_map_50": metrics["box_map_50"],
        "box_map": metrics["box_map"],
        "central_mask_map_50": metrics["central_map"].get("mask_map_50"),
        "central_segmented": f"{central['segmented']} / {central['images']}",
        "central_class_accuracy": central["class_accuracy"],
        "central_offset_median": central.get("centroid_offset_median"),
        "seconds": seconds,
    }


def markdown(result: dict) -> str:
    rows = result["augment"]
    keys = list(next(iter(rows.values())))
    lines = [
        f"`{result['model']}` on {result['n']} {result['images']} images (detector's own classes)",
        "",
        "| augment | " + " | ".join(keys) + " |",
        "|---|" + "---|" * len(keys),
    ]
    for name, row in rows.items():
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="segmenter_psf_typical")
    parser.add_argument("--images", choices=sorted(FOLDERS), default="validation")
    parser.add_argument("--augment", default="none,flips,d4")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    directory = ROOT / "data" / FOLDERS[args.images]
    if not (directory / "manifest.json").exists():
        raise SystemExit(
            f"{directory} is missing: `skysift train segmenter` simulates it (or run "
            "benchmarks/bench_segmenter.py for the test images)"
        )
    module, _ = load_model(args.model)
    samples = load_images(str(directory))
    raws = raw_images(str(directory))
    rows = {}
    for name in args.augment.split(","):
        started = time.perf_counter()
        metrics = evaluate_segmenter(
            module, samples, raw_images=raws, augment=None if name == "none" else name
        )
        rows[name] = summary(metrics, time.perf_counter() - started)
        print(name, rows[name], flush=True)
    result = {"model": args.model, "images": args.images, "n": len(samples), "augment": rows}
    out = ROOT / "benchmarks" / "results" / f"{args.model}_augment_{args.images}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
