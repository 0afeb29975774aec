"""What limits Burke et al.'s precision at 80 % recall for a segmenter (diagnostic).

On the instances the ``Segmenter``'s label map keeps (its catalog), per truth S/N cut:

1. the figure as it is;
2. the fate of every truth instance at or above the cut: found (mask IoU >= 0.5) as its own
   group (star or galaxy), found as the other group, or missed;
3. the figure again with every matched instance given its true group: what a perfect star /
   galaxy second look could reach, the ceiling of re-classifying;
4. the detections that count as false above the score that reaches 80 % recall (all of
   them when 80 % is never reached), by kind: right source but wrong group, a mask that
   overlaps a truth instance with IoU 0.2-0.5, one that barely overlaps one, one on nothing;
   those with IoU 0.2-0.5 by how the mask lies on its instance (:func:`mask_shape`: a
   fragment of a source another detection found, a part of it, the source and more); with
   ``--list``, each of them where 80 % is reached (seed, place, mask area, and the
   truth instance it overlaps most), to look at by eye.

Validation seeds only (Burke et al.'s typical fields, or the segmenter's own images; both
simulated when missing): these ceilings steer what is built next, so they are never read off
the test images. Run: ``.venv/bin/python benchmarks/segmenter_limits.py --model segmenter_psf``.
Writes ``benchmarks/results/<model>_limits_<images>.json`` and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
from burke_figure import add_mask_box_options, reading_cell, second_looks
from burke_figure import their_reading as burke_figure_reading

from skysift.colour_typer import ColourTyper
from skysift.evaluate.burke_reading import GROUPS, image_rankings
from skysift.evaluate.segmentation import (
    counted_detections,
    figure_matches,
    figure_rankings,
    mask_iou_matrix,
    precision_at_recall_by_snr,
)
from skysift.mask_refine import MaskRefiner
from skysift.models.registry import load_model, model_location
from skysift.morphology import GalaxyTyper
from skysift.shreds import ShredClassifier
from skysift.sim.dataset import write_dataset
from skysift.train.segmenter import load_images, sample_targets, segmenter_catalogs
from skysift.train.segmenter_data import (
    SegmenterSamples,
    segmenter_field_configs,
    typical_field_configs,
)

ROOT = Path(__file__).resolve().parents[1]
IMAGE_SETS = {
    "typical": ("segmenter_typical_validation", typical_field_configs, 48),
    "standard": ("segmenter_val", segmenter_field_configs, 64),
}
FALSE_KINDS = ("wrong group", "mask IoU 0.2-0.5", "mask IoU < 0.2", "on nothing")


def with_true_groups(
    catalog: dict, target: dict, truth_index: np.ndarray, *, star: int, other: int
) -> dict:
    """``catalog`` with each matched instance's group set to its truth's (galaxy types kept;
    an instance called a star that is a galaxy becomes ``other``); ranks are left as they
    were detected."""
    labels = np.asarray(catalog["labels"]).copy()
    true_star = np.asarray(target["labels"]) == star
    matched = np.flatnonzero(truth_index >= 0)
    is_star = true_star[truth_index[matched]]
    labels[matched[is_star]] = star
    wrongly_star = matched[~is_star & (labels[matched] == star)]
    labels[wrongly_star] = other
    out = dict(catalog)
    out["labels"] = labels
    return out


def false_kind(iou_row: np.ndarray, matched: bool) -> str:
    if matched:
        return "wrong group"
    best = float(iou_row.max(initial=0.0))
    if best >= 0.2:
        return "mask IoU 0.2-0.5"
    return "mask IoU < 0.2" if best > 0 else "on nothing"


#: How a false detection's mask lies on the truth instance it overlaps most
#: (:func:`mask_shape`).
MASK_SHAPES = ("fragment of a found source", "part of its source", "its source and more", "other")


def mask_shape(mask: np.ndarray, truth: np.ndarray, *, found_by_another: bool) -> str:
    """How a detection's boolean ``mask`` lies on a truth instance's: 90 % or more of it
    inside the truth (a fragment when another detection matches that truth, else a part),
    90 % or more of the truth inside it (the source and more: a blend or a mask too wide),
    or neither."""
    overlap = np.count_nonzero(mask & truth)
    if overlap >= 0.9 * max(np.count_nonzero(mask), 1):
        return MASK_SHAPES[0] if found_by_another else MASK_SHAPES[1]
    if overlap >= 0.9 * max(np.count_nonzero(truth), 1):
        return MASK_SHAPES[2]
    return MASK_SHAPES[3]


def false_detail(
    catalog: dict,
    target: dict,
    snr: np.ndarray,
    iou: np.ndarray,
    detection: int,
    seed: int,
    *,
    star: int,
    matched: np.ndarray | None = None,
) -> dict:
    """One false detection, for reading by eye: where it is, its mask, and the truth
    instance its mask overlaps most (its S/N, group and footprint area, and how the mask
    lies on it: :func:`mask_shape`; ``matched``, each detection's truth index or -1, tells
    whether another detection found that instance)."""
    mask = np.asarray(catalog["masks"])[detection, 0] >= 0.5
    ys, xs = np.nonzero(mask)
    ranking = np.asarray(catalog.get("detection_scores", catalog["scores"]), dtype=float)
    row = {
        "seed": seed,
        "score": round(float(ranking[detection]), 3),
        "x": round(float(xs.mean()), 1) if xs.size else None,
        "y": round(float(ys.mean()), 1) if ys.size else None,
        "area": int(mask.sum()),
    }
    if iou.shape[1] and iou[detection].max() > 0:  # on nothing: no instance to name
        k = int(np.argmax(iou[detection]))
        truth = np.asarray(target["masks"])[k].astype(bool)
        others = np.delete(np.asarray(matched), detection) if matched is not None else []
        row |= {
            "best_iou": round(float(iou[detection, k]), 3),
            "instance_snr": round(float(snr[k]), 1),
            "instance_group": "star" if np.asarray(target["labels"])[k] == star else "galaxy",
            "instance_area": int(truth.sum()),
            "shape": mask_shape(mask, truth, found_by_another=bool(np.any(others == k))),
        }
    return row


def limits(catalogs, samples, classes, cuts) -> dict:
    """The four views of the module notes for each cut."""
    star, other = classes.index("star") + 1, classes.index("other") + 1
    targets = [sample_targets(s["labels"], s["ids"], s["classes"]) for s in samples]
    snr = [np.asarray(s["snr"], dtype=float) for s in samples]
    unmasked = [s["unmasked"] for s in samples]
    seeds = [int(s["seed"]) for s in samples]
    matched, on_unmasked = figure_matches(catalogs, targets, unmasked=unmasked)
    oracle = [
        with_true_groups(c, t, m, star=star, other=other)
        for c, t, m in zip(catalogs, targets, matched, strict=True)
    ]
    figure = precision_at_recall_by_snr(
        catalogs, targets, snr, classes, cuts=cuts, unmasked=unmasked
    )
    ceiling = precision_at_recall_by_snr(
        oracle, targets, snr, classes, cuts=cuts, unmasked=unmasked
    )
    ious = [
        mask_iou_matrix(np.asarray(c["masks"])[:, 0] >= 0.5, np.asarray(t["masks"], dtype=bool))
        for c, t in zip(catalogs, targets, strict=True)
    ]
    rows = []
    for cut, as_is, best in zip(cuts, figure, ceiling, strict=True):
        fates = Counter(
            {
                f"{group}: {fate}": 0
                for group in ("star", "galaxy")
                for fate in ("found as star", "found as galaxy", "missed")
            }
        )
        ranked: dict[str, list[tuple[float, bool, str]]] = {"star": [], "galaxy": []}
        n_true = Counter()
        for image, (c, t, values, m, found, iou) in enumerate(
            zip(catalogs, targets, snr, matched, on_unmasked, ious, strict=True)
        ):
            required = values >= cut
            true_star = np.asarray(t["labels"]) == star
            predicted_star = np.asarray(c["labels"]) == star
            owner = np.full(len(true_star), -1)
            owner[m[m >= 0]] = np.flatnonzero(m >= 0)
            for k in np.flatnonzero(required):
                group = "star" if true_star[k] else "galaxy"
                n_true[group] += 1
                if owner[k] < 0:
                    fates[f"{group}: missed"] += 1
                else:
                    called = "star" if predicted_star[owner[k]] else "galaxy"
                    fates[f"{group}: found as {called}"] += 1
            counts = counted_detections(c, t, m, found, required, overlap=lambda iou=iou: iou)
            ranking = np.asarray(c.get("detection_scores", c["scores"]), dtype=float)
            for d in np.flatnonzero(counts):
                group = "star" if predicted_star[d] else "galaxy"
                right = m[d] >= 0 and bool(true_star[m[d]]) == (group == "star")
                kind = "" if right else false_kind(iou[d], bool(m[d] >= 0))
                detail = (
                    None
                    if right
                    else false_detail(c, t, values, iou, d, seeds[image], star=star, matched=m)
                )
                ranked[group].append((float(ranking[d]), bool(right), kind, detail))
        false_above = {}
        for group, items in ranked.items():
            items.sort(key=lambda item: -item[0])
            hits = np.cumsum([item[1] for item in items])
            reach = np.flatnonzero(hits >= 0.8 * n_true[group]) if items else np.array([])
            upto = int(reach[0]) + 1 if reach.size else len(items)
            kinds = Counter(kind for _, right, kind, _ in items[:upto] if not right)
            shapes = Counter(
                detail.get("shape")
                for _, right, kind, detail in items[:upto]
                if not right and kind == "mask IoU 0.2-0.5"
            )
            false_above[group] = {
                "reached": bool(reach.size),
                "ranked": upto,
                **{kind: kinds.get(kind, 0) for kind in FALSE_KINDS},
                "wide_mask_shapes": {shape: shapes.get(shape, 0) for shape in MASK_SHAPES},
                "detections": [
                    {"kind": kind, **detail}
                    for _, right, kind, detail in items[:upto]
                    if not right and reach.size
                ],
            }
        rows.append(
            {
                "snr_min": cut,
                "figure": as_is,
                "true_groups": best,
                "fates": dict(sorted(fates.items())),
                "false_above_80_recall": false_above,
            }
        )
    return {
        "images": len(samples),
        "cuts": rows,
        "their_reading": their_reading(catalogs, targets, snr, unmasked, classes, cuts),
    }


def their_reading(catalogs, targets, snr, unmasked, classes, cuts) -> dict:
    """Burke et al.'s averaged per-image reading (:func:`burke_figure.their_reading`) of the
    catalogs: as their code reads it, and per cut on the detections our figure counts."""
    own: dict[str, list] = {group: [] for group in GROUPS}
    for catalog, target in zip(catalogs, targets, strict=True):
        for group, entry in image_rankings(catalog, target, classes).items():
            own[group].append(entry)
    merged = figure_rankings(catalogs, targets, snr, classes, cuts=cuts, unmasked=unmasked)
    return burke_figure_reading(own, merged, resamples=1000, confidence=0.9)


def _value(row: dict, group: str) -> str:
    precision, recall = row[f"{group}_precision"], row[f"{group}_max_recall"]
    shown = "not reached" if np.isnan(precision) else f"{precision:.3f}"
    return f"{shown} ({recall:.2f})"


def _their_reading_lines(reading: dict | None) -> list[str]:
    if not reading:
        return []
    lines = [
        "",
        "Read as Burke et al.'s code reads it (per-image curves of the detections >= 0.5, "
        "resampled by rank and averaged; `skysift.evaluate.burke_reading`); 90 % interval over "
        "the images, then the images' mean recall with every detection kept:",
        "",
        "| truth required | fields per curve | stars | galaxies |",
        "|---|---|---|---|",
    ]
    for row in reading["rows"]:
        lines.append(
            f"| {row['truth']} | {row['fields_per_curve']} | {reading_cell(row['star'])} | "
            f"{reading_cell(row['galaxy'])} |"
        )
    return lines


def markdown(result: dict, *, listing: bool = False) -> str:
    lines = [
        f"`{result['model']}` on {result['images']} {result['image_set']} validation images "
        "(catalog; precision at 80 % recall, max recall in brackets)",
        "",
        "| S/N >= | stars | stars, true groups | galaxies | galaxies, true groups |",
        "|---|---|---|---|---|",
    ]
    for row in result["cuts"]:
        a, b = row["figure"], row["true_groups"]
        lines.append(
            f"| {row['snr_min']:g} | {_value(a, 'star')} | {_value(b, 'star')} | "
            f"{_value(a, 'galaxy')} | {_value(b, 'galaxy')} |"
        )
    lines += _their_reading_lines(result.get("their_reading"))
    lines += ["", "| S/N >= | " + " | ".join(sorted(result["cuts"][0]["fates"])) + " |"]
    lines.append("|---" * (1 + len(result["cuts"][0]["fates"])) + "|")
    for row in result["cuts"]:
        fates = row["fates"]
        lines.append(
            f"| {row['snr_min']:g} | " + " | ".join(str(fates[k]) for k in sorted(fates)) + " |"
        )
    lines += [
        "",
        "| S/N >= | group | ranked to 80 % | " + " | ".join(FALSE_KINDS) + " |",
        "|---|---|---|" + "---|" * len(FALSE_KINDS),
    ]
    for row in result["cuts"]:
        for group, false in row["false_above_80_recall"].items():
            reach = f"{false['ranked']}" + ("" if false["reached"] else " (all; not reached)")
            lines.append(
                f"| {row['snr_min']:g} | {group} | {reach} | "
                + " | ".join(str(false[k]) for k in FALSE_KINDS)
                + " |"
            )
    lines += [
        "",
        "Masks with IoU 0.2-0.5 above 80 % recall, by how they lie on their truth instance:",
        "",
        "| S/N >= | group | " + " | ".join(MASK_SHAPES) + " |",
        "|---|---|" + "---|" * len(MASK_SHAPES),
    ]
    for row in result["cuts"]:
        for group, false in row["false_above_80_recall"].items():
            shapes = false.get("wide_mask_shapes", {})
            lines.append(
                f"| {row['snr_min']:g} | {group} | "
                + " | ".join(str(shapes.get(k, "-")) for k in MASK_SHAPES)
                + " |"
            )
    if listing:
        lines += [
            "",
            "| S/N >= | group | kind | seed | score | x, y | area | best IoU | "
            "its S/N, group, area | on it |",
            "|---" * 10 + "|",
        ]
        for row in result["cuts"]:
            for group, false in row["false_above_80_recall"].items():
                for d in false["detections"]:
                    where = "-" if d["x"] is None else f"{d['x']:.0f}, {d['y']:.0f}"
                    inst = (
                        f"{d['instance_snr']:.0f}, {d['instance_group']}, {d['instance_area']}"
                        if "best_iou" in d
                        else "-"
                    )
                    lines.append(
                        f"| {row['snr_min']:g} | {group} | {d['kind']} | {d['seed']} | "
                        f"{d['score']:.3f} | {where} | {d['area']} | "
                        f"{d.get('best_iou', 0.0):.2f} | {inst} | {d.get('shape', '-')} |"
                    )
    return "\n".join(lines) + "\n"


def add_chain_options(parser: argparse.ArgumentParser) -> None:
    """The detector, galaxy typer, second look and shred classifier of the chain measured
    (``--model``, ``--weights-dir``, ``--own-types``, ``--second-look[-dir]``,
    ``--star-fraction``, ``--shreds[-dir]``), shared with ``segmenter_maskness.py``."""
    parser.add_argument("--model", default="segmenter")
    parser.add_argument("--weights-dir", default=None, help="Model folder (default: shipped).")
    parser.add_argument(
        "--star-fraction",
        type=float,
        default=None,
        help="Re-weight the second look to this fraction of stars among stars and galaxies "
        "(SegmentConfig.star_fraction); added to the results' name as _stars<value>.",
    )
    parser.add_argument("--own-types", action="store_true", help="Skip the galaxy-type network.")
    parser.add_argument(
        "--second-look",
        default=None,
        help="Shipped second look to refine the catalog with (<name>&<name>: the mean of "
        "those looks).",
    )
    parser.add_argument(
        "--second-look-dir",
        default=None,
        help="Folder holding the second look's weights and card (default: the shipped ones).",
    )
    parser.add_argument(
        "--shreds",
        default=None,
        help="Shred classifier whose 1 - P(shred) scales each galaxy's score "
        "(SegmentConfig.shreds); added to the results' name as _<name>.",
    )
    parser.add_argument(
        "--shreds-dir",
        default=None,
        help="Folder holding the shred classifier's weights and card (default: shipped).",
    )


def chain_from_args(args: argparse.Namespace):
    """The ``(detector, galaxy typer, second look, shred classifier)`` that
    :func:`add_chain_options`' arguments name (None for each one left out)."""
    module, _ = load_model(
        args.model, directory=Path(args.weights_dir) if args.weights_dir else None
    )
    typer = None if args.own_types else GalaxyTyper()
    look = None
    if args.second_look:
        look_dir = Path(args.second_look_dir) if args.second_look_dir else None
        look = second_looks(args.second_look, directory=look_dir)
    shreds = None
    if args.shreds:
        shreds_dir = Path(args.shreds_dir) if args.shreds_dir else None
        shred_module, shred_card = load_model(args.shreds, directory=shreds_dir)
        shreds = ShredClassifier(args.shreds, module=shred_module, card=shred_card)
    return module, typer, look, shreds


def add_refiner_and_typer_options(
    parser: argparse.ArgumentParser, *, refiner_named: str, typer_named: str
) -> None:
    """``--mask-refiner`` and ``--colour-typer``: the chain's mask refiner and colour typer
    (``SegmentConfig.mask_refiner``, ``SegmentConfig.colour_typer``), shared with
    ``bench_segmenter.py``; ``refiner_named`` and ``typer_named`` say how each names the
    results."""
    parser.add_argument(
        "--mask-refiner",
        default=None,
        help="Mask refiner (skysift.mask_refine; a shipped name or a card's path) that draws "
        f"the small instances' masks again; {refiner_named}.",
    )
    parser.add_argument(
        "--colour-typer",
        default=None,
        help="Colour typer (skysift.colour_typer; a shipped name or a card's path) that "
        "decides each instance's group last, on the images of its bands; needs "
        f"--second-look; {typer_named}.",
    )


def mask_refiner_from_args(args: argparse.Namespace) -> MaskRefiner | None:
    """The :class:`~skysift.mask_refine.MaskRefiner` that ``--mask-refiner`` names, or None."""
    return MaskRefiner(args.mask_refiner) if args.mask_refiner else None


def colour_typer_from_args(args: argparse.Namespace) -> ColourTyper | None:
    """The :class:`~skysift.colour_typer.ColourTyper` that ``--colour-typer`` names, or
    None."""
    return ColourTyper(args.colour_typer) if args.colour_typer else None


def _look_part(args: argparse.Namespace) -> str:
    """``_<look>`` of the results' name (several looks: ``_<look>+<look>``), or ""."""
    if not args.second_look:
        return ""
    return "_" + "+".join(model_location(look)[0] for look in args.second_look.split("&"))


def chain_name(args: argparse.Namespace) -> str:
    """The results' name for the chain: ``<model>[_<look>][_stars<f>][_<shreds>]`` (several
    looks: ``<look>+<look>``)."""
    name = args.model + _look_part(args)
    if args.star_fraction is not None:
        name += f"_stars{args.star_fraction:g}"
    if args.shreds:
        name += f"_{args.shreds}"
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_chain_options(parser)
    parser.add_argument("--cuts", default="20,50,100")
    parser.add_argument("--images", choices=sorted(IMAGE_SETS), default="typical")
    parser.add_argument(
        "--fields",
        type=int,
        default=None,
        help="Validation images of the set (default: 48 typical, 64 standard); another "
        "number reads data/<set>_<n> and names the results <...>_limits_<set>_<n>.json.",
    )
    parser.add_argument(
        "--clumps-in-footprints",
        action="store_true",
        help="Truth masks with star-forming clumps' pixels in their parent's (the simulator's "
        "option): reads data/<set>[_<n>]_clumps, names the results <...>_clumps.json.",
    )
    parser.add_argument(
        "--burke-masks",
        action="store_true",
        help="Truth masks by Burke et al.'s rule (each source's light above a fixed fraction "
        "of its own peak): reads data/<set>[_<n>]_burke, names the results <...>_burke.json.",
    )
    parser.add_argument(
        "--mask-threshold",
        type=float,
        default=0.5,
        help="Mask probability painted into the label map (SegmentConfig.mask_threshold); "
        "the second look still sees its 0.5 masks. Another than 0.5 is added to the results' "
        "name as _mask<value>.",
    )
    parser.add_argument(
        "--large-mask-threshold",
        type=float,
        default=None,
        help="Paint instances of --large-mask-area pixels or more at this mask probability "
        "(SegmentConfig.large_mask_threshold); added to the results' name as "
        "_large<value>at<area>.",
    )
    parser.add_argument("--large-mask-area", type=int, default=600)
    add_mask_box_options(parser)
    add_refiner_and_typer_options(
        parser,
        refiner_named="added to the results' name as _refined",
        typer_named="added to the results' name as _typed",
    )
    parser.add_argument(
        "--tag", default="", help="Added to the results' name: <model>_<look>_<tag>_limits_..."
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--list",
        action="store_true",
        help="Also print every false detection above 80 %% recall (seed, place, mask, and "
        "the truth instance it overlaps most).",
    )
    args = parser.parse_args()
    if args.colour_typer and not args.second_look:
        parser.error("--colour-typer decides from the second look's probabilities")
    import torch

    torch.set_num_threads(args.threads)
    name, configs, n = IMAGE_SETS[args.images]
    suffix = ""
    if args.fields is not None and args.fields != n:
        n, suffix = args.fields, f"_{args.fields}"
    if args.clumps_in_footprints:
        suffix += "_clumps"
    if args.burke_masks:
        suffix += "_burke"
    directory = ROOT / "data" / (name + suffix)
    fields = configs(
        "validation",
        n,
        clumps_in_footprints=args.clumps_in_footprints,
        burke_masks=args.burke_masks,
    )
    write_dataset(directory, fields, SegmenterSamples(), progress=True, workers=2)
    module, typer, look, shreds = chain_from_args(args)
    samples = load_images(str(directory))
    catalogs = segmenter_catalogs(
        module,
        samples,
        galaxy_typer=typer,
        second_look=look,
        mask_threshold=args.mask_threshold,
        star_fraction=args.star_fraction,
        shreds=shreds,
        large_mask_threshold=args.large_mask_threshold,
        large_mask_area=args.large_mask_area,
        mask_box_scale=args.mask_box_scale,
        mask_box_side=args.mask_box_side,
        augment=args.augment,
        mask_refiner=mask_refiner_from_args(args),
        colour_typer=colour_typer_from_args(args),
    )
    cuts = tuple(float(v) for v in args.cuts.split(","))
    result = limits(catalogs, samples, module.skysift_config.classes, cuts)
    name = args.model + _look_part(args)
    if args.mask_threshold != 0.5:
        name += f"_mask{args.mask_threshold:g}"
    if args.star_fraction is not None:
        name += f"_stars{args.star_fraction:g}"
    if args.shreds:
        name += f"_{args.shreds}"
    if args.large_mask_threshold is not None:
        name += f"_large{args.large_mask_threshold:g}at{args.large_mask_area}"
    if args.mask_box_scale != 1.0:
        name += f"_boxes{args.mask_box_scale:g}from{args.mask_box_side:g}"
    if args.augment:
        name += f"_{args.augment}"
    if args.mask_refiner:
        name += "_refined"
    if args.colour_typer:
        name += "_typed"
    if args.tag:
        name += f"_{args.tag}"
    result.update(model=name, image_set=args.images, galaxy_types=typer is not None)
    out = ROOT / "benchmarks" / "results" / f"{name}_limits_{args.images}{suffix}.json"
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    print(markdown(result, listing=args.list))


if __name__ == "__main__":
    main()
