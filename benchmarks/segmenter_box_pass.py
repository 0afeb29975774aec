"""Does a second pass of the box head tighten the segmenter's boxes? (a diagnostic)

The galaxies that keep Burke et al.'s figure below 0.98 at S/N >= 20 are faint galaxies whose
boxes are about twice too large, so that their masks overlap the truth with IoU 0.2-0.5
(docs/models.md, session 28). Cascade R-CNN refines boxes in stages; the cheapest form of it
needs no training: feed each detection's box back through the trained box head and apply the
regression it gives for the detection's class. This script measures, on validation typical
fields, how often each detection's box overlaps its truth instance's box (the one its mask
overlaps most) at IoU >= 0.5 before and after that second pass, by truth S/N and group, and
what the pass does to the boxes of the detections whose masks have IoU 0.2-0.5.

Run: ``.venv/bin/python benchmarks/segmenter_box_pass.py --fields 256``. Reads the
validation fields of ``segmenter_limits.py --fields 1024`` (simulating them if missing) and
writes ``benchmarks/results/<model>_box_pass_typical_<fields>.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SNR_BINS = ((5.0, 20.0), (20.0, 50.0), (50.0, 100.0), (100.0, float("inf")))


def second_pass_boxes(module, batch, outputs):
    """Each detection's box after one more pass through the box head (the regression of its
    own class), for torchvision eval ``outputs`` of the tensors ``batch``."""
    import torch

    heads = module.roi_heads
    image_list, _ = module.transform(batch)
    features = module.backbone(image_list.tensors)
    boxes = [o["boxes"] for o in outputs]
    pooled = heads.box_head(heads.box_roi_pool(features, boxes, image_list.image_sizes))
    _, regression = heads.box_predictor(pooled)
    decoded = heads.box_coder.decode(regression, boxes)
    refined, start = [], 0
    for o in outputs:
        n = len(o["boxes"])
        refined.append(decoded[start + torch.arange(n), o["labels"]])
        start += n
    return refined


def detection_rows(module, samples, *, min_score: float = 0.5) -> np.ndarray:
    """``(truth S/N, truth is a star, mask IoU, box IoU before, box IoU after)`` of every
    detection scoring ``min_score`` or more, paired with the truth its mask overlaps most."""
    import torch
    from torchvision.ops import box_iou

    from skysift.evaluate.segmentation import mask_iou_matrix
    from skysift.train.segmenter import network_images, sample_targets

    star = module.skysift_config.classes.index("star") + 1
    images = network_images(module, samples)
    rows = []
    module.eval()
    with torch.no_grad():
        for start in range(0, len(samples), 4):
            batch = [torch.from_numpy(np.ascontiguousarray(i)) for i in images[start : start + 4]]
            outputs = module(batch)
            refined = second_pass_boxes(module, batch, outputs)
            for k, (o, after) in enumerate(zip(outputs, refined, strict=True)):
                sample = samples[start + k]
                target = sample_targets(sample["labels"], sample["ids"], sample["classes"])
                keep = o["scores"] >= min_score
                if not keep.any() or not len(target["labels"]):
                    continue
                masks = (o["masks"][keep, 0] >= 0.5).numpy()
                overlap = mask_iou_matrix(masks, np.asarray(target["masks"], dtype=bool))
                best = overlap.argmax(1)
                index = torch.arange(int(keep.sum()))
                truth_boxes = torch.as_tensor(np.asarray(target["boxes"]), dtype=torch.float32)
                pick = torch.as_tensor(best)
                before = box_iou(o["boxes"][keep], truth_boxes)[index, pick].numpy()
                later = box_iou(after[keep], truth_boxes)[index, pick].numpy()
                snr = np.asarray(sample["snr"], dtype=float)[best]
                is_star = np.asarray(target["labels"])[best] == star
                mask_iou = overlap[np.arange(len(best)), best]
                rows.append(np.column_stack([snr, is_star, mask_iou, before, later]))
    return np.concatenate(rows) if rows else np.zeros((0, 5))


def summary(rows: np.ndarray) -> list[dict]:
    """Per S/N bin and group: box IoU >= 0.5 before and after, and the median box IoU of the
    detections whose mask IoU is 0.2-0.5 before and after."""
    out = []
    for low, high in SNR_BINS:
        for group, is_star in (("galaxy", 0.0), ("star", 1.0)):
            chosen = rows[(rows[:, 0] >= low) & (rows[:, 0] < high) & (rows[:, 1] == is_star)]
            loose = chosen[(chosen[:, 2] >= 0.2) & (chosen[:, 2] < 0.5)]
            out.append(
                {
                    "snr_min": low,
                    "snr_max": high,
                    "group": group,
                    "n": len(chosen),
                    "box_iou_50_before": float(np.mean(chosen[:, 3] >= 0.5))
                    if len(chosen)
                    else None,
                    "box_iou_50_after": float(np.mean(chosen[:, 4] >= 0.5))
                    if len(chosen)
                    else None,
                    "loose_masks": len(loose),
                    "loose_box_iou_before": float(np.median(loose[:, 3])) if len(loose) else None,
                    "loose_box_iou_after": float(np.median(loose[:, 4])) if len(loose) else None,
                }
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="segmenter_psf_typical")
    parser.add_argument("--fields", type=int, default=256, help="First N of the 1,024 fields.")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    from skysift.models.registry import load_model
    from skysift.sim.dataset import write_dataset
    from skysift.train.segmenter import load_images
    from skysift.train.segmenter_data import SegmenterSamples, typical_field_configs

    torch.set_num_threads(args.threads)
    directory = ROOT / "data" / "segmenter_typical_validation_1024"
    write_dataset(
        directory, typical_field_configs("validation", 1024), SegmenterSamples(), workers=2
    )
    module, _ = load_model(args.model)
    rows = detection_rows(module, load_images(str(directory))[: args.fields])
    result = {"model": args.model, "fields": args.fields, "bins": summary(rows)}
    out = ROOT / "benchmarks" / "results" / f"{args.model}_box_pass_typical_{args.fields}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(
        "| truth S/N | group | detections | box IoU >= 0.5: before / after | mask IoU 0.2-0.5: "
        "n, median box IoU before / after |"
    )
    print("|---|---|---|---|---|")
    for b in result["bins"]:
        if not b["n"]:
            continue
        loose = (
            f"{b['loose_masks']}, {b['loose_box_iou_before']:.3f} / {b['loose_box_iou_after']:.3f}"
            if b["loose_masks"]
            else "0"
        )
        print(
            f"| {b['snr_min']:g}-{b['snr_max']:g} | {b['group']} | {b['n']} | "
            f"{b['box_iou_50_before']:.3f} / {b['box_iou_50_after']:.3f} | {loose} |"
        )


if __name__ == "__main__":
    main()
