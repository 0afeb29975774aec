"""Burke et al.'s figure with bootstrap intervals, on more held-out typical fields.

The benchmark pages and the second looks' cards read precision at 80 % recall off 64 typical
test fields, where one galaxy is 2.4 points of recall at S/N >= 100. This script simulates
``--fields`` of them (test seeds; the first 64 are the pages' own), runs the shipped
``segmenter_psf`` catalog without and with each second look, and gives each figure with a
percentile bootstrap interval over the fields
(:mod:`skysift.evaluate.figure_uncertainty`).

Run: ``.venv/bin/python benchmarks/burke_figure.py --fields 1024``. Writes
``benchmarks/results/burke_figure_<fields>.json`` and ``docs/benchmarks/burke_figure.md``.
With ``--update --looks <spec>`` only those looks are run again and put into the existing
results (the detector and the other looks are deterministic, so they would come out the same;
the page says which looks were re-run, and when a shipped model changed, by which command).
``--role validation`` measures the same on validation seeds instead, to choose between chains
without reading the test fields (``..._validation.json``, ``burke_figure<tag>_validation.md``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from skysift.io import atomic_write
from skysift.sim import BURKE_PEAK_FRACTIONS

ROOT = Path(__file__).resolve().parents[1]
CUTS = (20.0, 50.0, 100.0)
#: Images segmented at a time: their whole-image masks take ~25 MB per typical field.
CHUNK = 32


def second_looks(names: str, *, directory: Path | None = None):
    """The :class:`~skysift.second_look.SecondLook` that ``names`` names, or for
    ``<name>&<name>...`` the tuple of them whose mean decides (``SegmentConfig(second_look=
    (...))``); each name is a shipped look, a look in ``directory``, or a card's path."""
    from skysift.models.registry import load_model, model_location
    from skysift.second_look import SecondLook

    looks = []
    for reference in names.split("&"):
        name, folder = model_location(reference)
        module, card = load_model(name, directory=folder or directory)
        looks.append(SecondLook(name, module=module, card=card))
    return looks[0] if len(looks) == 1 else tuple(looks)


def parse_look(
    spec: str,
) -> tuple[str | None, float | None, str | None, str | None, str | None]:
    """``none``, a shipped second look's name (``<name>&<name>``: the mean of those looks),
    or ``<name>@<f>``: that look re-weighted to a
    star fraction ``f`` (``SegmentConfig.star_fraction``); any of them followed by
    ``+<shreds>``: a shipped shred classifier scales the galaxies' scores by 1 - P(shred)
    (``SegmentConfig.shreds``); then by ``~<refiner>``: a mask refiner (a shipped name or
    a card's path) draws the small instances' masks again (``SegmentConfig.mask_refiner``;
    ``~<refiner>:<augment>``: averaged over the views of a test-time augmentation, ``flips``
    or ``d4``);
    and then by ``^<typer>``: a colour typer (a shipped name or a card's path) decides each
    instance's group last (``SegmentConfig.colour_typer``).
    Returns ``(look, star fraction, shreds, refiner, colour typer)``, None for each one left
    out."""
    spec, _, typer = spec.partition("^")
    chain, _, refiner = spec.partition("~")
    look, _, shreds = chain.partition("+")
    name, _, fraction = look.partition("@")
    return (
        None if name == "none" else name,
        float(fraction) if fraction else None,
        shreds or None,
        refiner or None,
        typer or None,
    )


def chain_parts(spec: str) -> tuple:
    """The ``(look, star fraction, shred classifier, mask refiner, colour typer)`` that a
    :func:`parse_look` spec names, loaded (None for each one left out): what :func:`rankings`
    takes per spec."""
    from skysift.colour_typer import ColourTyper
    from skysift.shreds import ShredClassifier

    name, star_fraction, shreds, refiner, typer = parse_look(spec)
    return (
        None if name is None else second_looks(name),
        star_fraction,
        None if shreds is None else ShredClassifier(shreds),
        None if refiner is None else _mask_refiner(refiner),
        None if typer is None else ColourTyper(typer),
    )


def _mask_refiner(refiner: str):
    """The :class:`~skysift.mask_refine.MaskRefiner` of a ``<refiner>[:<augment>]`` spec."""
    from skysift.mask_refine import MaskRefiner

    name, _, augment = refiner.partition(":")
    return MaskRefiner(name, augment=augment or None)


def rankings(
    module,
    samples,
    *,
    galaxy_typer,
    looks: dict,
    paint: dict | None = None,
    mask_boxes: dict | None = None,
    own_rankings: dict | None = None,
) -> dict[str, list[dict]]:
    """Per look (``{spec: (SecondLook or None, star fraction or None, ShredClassifier or
    None, MaskRefiner or None, ColourTyper or None)}``), :func:`figure_rankings` of the
    ``Segmenter``'s catalogs; the detector runs once per chunk of images, and each look
    refines its predictions (once for the specs that differ only in their ``^<typer>``,
    each typer then deciding on the same refined predictions).
    ``paint`` holds :func:`as_catalog`'s large-mask options, ``mask_boxes``
    :func:`predict`'s. When given, ``own_rankings`` is filled with each look's per-image
    entries of Burke et al.'s own matching (``{spec: {group: [entry, ...]}}``,
    :func:`skysift.evaluate.burke_reading.image_rankings`)."""
    from skysift.evaluate.burke_reading import GROUPS, image_rankings
    from skysift.evaluate.segmentation import as_catalog, figure_rankings
    from skysift.train.segmenter import network_images, predict, refine, sample_targets

    classes = module.skysift_config.classes
    merged = {spec: [{"snr_min": cut, "star": [], "galaxy": []} for cut in CUTS] for spec in looks}
    for start in range(0, len(samples), CHUNK):
        chunk = samples[start : start + CHUNK]
        predictions = predict(module, network_images(module, chunk), **(mask_boxes or {}))
        targets = [sample_targets(s["labels"], s["ids"], s["classes"]) for s in chunk]
        untyped: dict[str, list] = {}  # specs that differ only in their colour typer
        for spec, (look, star_fraction, shreds, refiner, typer) in looks.items():
            chain = spec.partition("^")[0]
            if chain not in untyped:
                untyped[chain] = refine(
                    predictions,
                    chunk,
                    classes,
                    galaxy_typer=galaxy_typer,
                    second_look=look,
                    star_fraction=star_fraction,
                    shreds=shreds,
                    mask_refiner=refiner,
                )
            refined = (
                untyped[chain]
                if typer is None
                else refine(untyped[chain], chunk, classes, colour_typer=typer)
            )
            catalogs = [as_catalog(p, **(paint or {})) for p in refined]
            if own_rankings is not None:
                mine = own_rankings.setdefault(spec, {group: [] for group in GROUPS})
                for catalog, target in zip(catalogs, targets, strict=True):
                    for group, entry in image_rankings(catalog, target, classes).items():
                        mine[group].append(entry)
            ranked = figure_rankings(
                catalogs,
                targets,
                [s["snr"] for s in chunk],
                classes,
                cuts=CUTS,
                unmasked=[s["unmasked"] for s in chunk],
            )
            for total, part in zip(merged[spec], ranked, strict=True):
                for group in ("star", "galaxy"):
                    total[group] += part[group]
    return merged


def intervals(merged: list[dict], *, n_first: int, resamples: int, confidence: float) -> list:
    """Per cut and group: the figure on every field with its interval, and on the first
    ``n_first`` fields (the pages' own)."""
    from skysift.evaluate.figure_uncertainty import precision_at_recall_interval
    from skysift.evaluate.segmentation import figure_from_rankings

    rows = []
    for ranked in merged:
        row: dict = {"snr_min": ranked["snr_min"]}
        for group in ("star", "galaxy"):
            per_image = ranked[group]
            everything = figure_from_rankings(per_image)
            row[group] = precision_at_recall_interval(
                per_image, confidence=confidence, n_resamples=resamples
            ) | {
                "n": everything["n"],
                "max_recall": everything["max_recall"],
                f"precision_first_{n_first}": figure_from_rankings(per_image[:n_first])[
                    "precision"
                ],
            }
        rows.append(row)
    return rows


#: Our typical fields pooled per curve for Burke et al.'s 512x512 area (ours are 256x256).
FIELDS_PER_THEIR_IMAGE = 4


def their_reading(
    own: dict, merged: list[dict], *, resamples: int, confidence: float
) -> dict[str, list[dict]]:
    """Burke et al.'s averaged per-image reading (:mod:`skysift.evaluate.burke_reading`) of
    one look, one row per way of choosing the detections and truth: ``own``
    (:func:`skysift.evaluate.burke_reading.image_rankings` per group: their code, every truth
    instance required, matching within each group) and ``merged`` (:func:`rankings`' entries
    per cut: the detections our figure counts), each with one field per curve and with
    :data:`FIELDS_PER_THEIR_IMAGE` fields per curve."""
    from skysift.evaluate.burke_reading import mean_curve_interval, pooled_in_groups, ranking_curve

    options = {"n_resamples": resamples, "confidence": confidence}
    sources = [("all (their code)", own)] + [
        (f"S/N >= {ranked['snr_min']:g} (our figure's detections)", ranked) for ranked in merged
    ]
    rows = []
    for fields in (1, FIELDS_PER_THEIR_IMAGE):
        for required, entries in sources:
            row: dict = {"truth": required, "fields_per_curve": fields}
            for group in ("star", "galaxy"):
                pooled = pooled_in_groups(entries[group], fields)
                row[group] = mean_curve_interval(
                    [ranking_curve(*entry) for entry in pooled], **options
                )
            rows.append(row)
    return {"rows": rows}


def _cell(value: dict) -> str:
    shown = "not reached" if np.isnan(value["precision"]) else f"{value['precision']:.3f}"
    return (
        f"{shown} [{value['low']:.3f}, {value['high']:.3f}] "
        f"({value['max_recall']:.2f}; {value['reached']:.0%})"
    )


def plot(result: dict, path: Path) -> None:
    """Precision at 80 % recall against the S/N cut, with the intervals, per second look."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    looks = list(result["looks"])
    for ax, group, target in zip(axes, ("galaxy", "star"), (0.98, 0.92), strict=True):
        for k, look in enumerate(looks):
            rows = result["looks"][look]
            cuts = np.array([row["snr_min"] for row in rows]) * (1 + 0.04 * (k - 1))
            value = np.array([row[group]["precision"] for row in rows], dtype=float)
            low = np.array([row[group]["low"] for row in rows])
            high = np.array([row[group]["high"] for row in rows])
            shown = np.nan_to_num(value, nan=0.0)
            ax.errorbar(
                cuts, shown, yerr=[shown - low, high - shown], marker="o", capsize=3, label=look
            )
        ax.axhline(target, color="grey", linestyle="--", linewidth=1, label="Burke et al.")
        ax.set_xscale("log")
        ax.set_xticks(CUTS, [f"{cut:g}" for cut in CUTS])
        ax.minorticks_off()
        ax.set_xlabel("truth S/N >=")
        name = "galaxies" if group == "galaxy" else "stars"
        ax.set_title(f"{name}, {result['fields']} held-out typical fields")
    axes[0].set_ylabel("precision at 80 % recall (0: not reached)")
    axes[0].set_ylim(0.5, 1.01)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def reading_cell(value: dict) -> str:
    """``precision [low, high] (mean max recall)`` of a :func:`their_reading` entry."""
    return (
        f"{value['precision']:.3f} [{value['low']:.3f}, {value['high']:.3f}] "
        f"({value['max_recall']:.2f})"
    )


def _their_reading(result: dict) -> list[str]:
    """The page's section on Burke et al.'s own reading of the figure (when measured)."""
    readings = result.get("their_reading")
    if not readings:
        return []
    lines = [
        "## Read as Burke et al.'s code reads it",
        "",
        "Their `compute_performance` (`burke86/astro_rcnn`): per field and group, the "
        "detections of confidence >= 0.5 ranked and matched at mask IoU >= 0.5, the VOC "
        "precision envelope with a (recall 1, precision 0) end point, both curves resampled "
        "by rank to 50 points and averaged over the fields; every truth instance required "
        "(no S/N cut); then the same averaging on the detections our figure counts at each "
        "S/N cut. Precision where the mean recall reaches 0.8, with the "
        f"{result['confidence']:.0%} bootstrap interval over the fields "
        "(`skysift.evaluate.burke_reading`), then the fields' mean recall with every "
        "detection >= 0.5 kept (below 0.8, the reading lies on the ramp to each curve's "
        "(recall 1, precision 0) end point). Their fields were 512x512, ours 256x256: a "
        "field's curve weighs the same whatever it holds, so the reading depends on the field "
        f"size; with {FIELDS_PER_THEIR_IMAGE} fields per curve, the fields of each pool are "
        "ranked together, as one field of their area.",
        "",
        "| second look | truth required | fields per curve | galaxies [interval] (mean max "
        "recall) | stars |",
        "|---|---|---|---|---|",
    ]
    for look, reading in readings.items():
        for row in reading["rows"]:
            lines.append(
                f"| {look} | {row['truth']} | {row['fields_per_curve']} | "
                f"{reading_cell(row['galaxy'])} | {reading_cell(row['star'])} |"
            )
    return [*lines, ""]


def markdown(result: dict) -> str:
    first = result["n_first"]
    role = result.get("role", "test")
    fields = (
        f"{result['fields']} held-out DECaLS g,r,z typical fields (test seeds, 256x256, every "
        f"artifact on; the first {first} are the benchmark pages' own)"
        if role == "test"
        else f"{result['fields']} DECaLS g,r,z typical fields of validation seeds (256x256, "
        "every artifact on: the fields chains are chosen on, not the figures to quote)"
    )
    lines = [
        "# Burke et al.'s figure on more typical fields, with intervals",
        "",
        f"`{result['command']}`. {fields}, catalog of `{result['model']}` with the "
        "`morphology` galaxy types, without and with each second look (`<look>@<f>`: "
        "re-weighted to a star fraction f, `SegmentConfig(star_fraction=f)`). Precision at 80 % "
        f"recall, in brackets the {result['confidence']:.0%} percentile bootstrap interval "
        f"over the fields ({result['resamples']} resamples; a resample that does not reach "
        "80 % recall counts as precision 0), then the maximum recall and the share of "
        "resamples reaching 80 % recall. Targets (Burke et al.): galaxies 0.98, stars 0.92. "
        '`+shred`: with the shred classifier, `SegmentConfig(shreds="shred")`.',
        "",
    ]
    paint = result.get("paint") or {}
    if paint:
        lines += [
            f"Instances of {paint['large_mask_area']} pixels or more are painted at mask "
            f"probability {paint['large_mask_threshold']:g} "
            "(`SegmentConfig.large_mask_threshold`).",
            "",
        ]
    if result.get("truth_masks") == "burke":
        lines += [
            "The truth masks follow Burke et al.'s own rule (their public code: each source's "
            f"noiseless light above {BURKE_PEAK_FRACTIONS[0]:.1%} (stars) or "
            f"{BURKE_PEAK_FRACTIONS[1]:.0%} (galaxies) of its own peak, smoothed; "
            "`--burke-masks`), not the 2-sigma isophote of the other pages.",
            "",
        ]
    boxes = result.get("mask_boxes") or {}
    if boxes.get("augment"):
        lines += [
            f"Each field is segmented in the views of `{boxes['augment']}`, fused "
            "(`SegmentConfig.augment`).",
            "",
        ]
    if "mask_box_scale" in boxes:
        lines += [
            f"The masks of detections whose box is {boxes['mask_box_side']:g} pixels or more "
            f"on its longer side are drawn in boxes {boxes['mask_box_scale']:g} times larger "
            "(`SegmentConfig.mask_box_scale`).",
            "",
        ]
    for group in ("galaxy", "star"):
        lines += [
            f"## {'Galaxies' if group == 'galaxy' else 'Stars'}",
            "",
            "| second look | truth S/N >= | truth instances | precision at 80 % recall "
            f"[interval] (max recall; reached) | on the first {first} fields |",
            "|---|---|---|---|---|",
        ]
        for look, rows in result["looks"].items():
            for row in rows:
                value = row[group]
                on_first = value[f"precision_first_{first}"]
                lines.append(
                    f"| {look} | {row['snr_min']:g} | {value['n']} | {_cell(value)} | "
                    f"{'not reached' if np.isnan(on_first) else f'{on_first:.3f}'} |"
                )
        lines.append("")
    lines += _their_reading(result)
    lines += ["![intervals](../images/burke_figure_intervals.png)", ""]
    lines.append(
        f"Segmenting and scoring took {result['seconds']:.0f} s on {result['threads']} thread(s)."
    )
    for update in result.get("updates", []):
        lines += [
            "",
            f"Re-run since, the other looks kept as they were: `{update['command']}` "
            f"({', '.join(update['looks'])}; {update['seconds']:.0f} s).",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=1024)
    parser.add_argument(
        "--role",
        choices=("test", "validation"),
        default="test",
        help="Seeds of the fields: test (held out, the figures to quote) or validation (to "
        "choose between chains; results and page end in _validation).",
    )
    parser.add_argument("--model", default="segmenter_psf")
    parser.add_argument(
        "--weights-dir", default=None, help="Folder of --model's weights (default: shipped)."
    )
    parser.add_argument(
        "--burke-masks",
        action="store_true",
        help="Truth masks by Burke et al.'s rule (each source's light above a fixed fraction "
        "of its own peak): reads data/segmenter_typical_test_<n>_burke.",
    )
    parser.add_argument(
        "--looks",
        default="none,second_look,second_look_reject,second_look_reject@0.27,"
        "second_look_reject@0.27+shred",
        help="Comma-separated: none, a shipped second look, or <look>@<f>: that look "
        "re-weighted to a star fraction f (SegmentConfig.star_fraction; 0.27 is the share of "
        "stars among the typical training fields' instances); +<shreds> after any of them "
        "adds a shipped shred classifier (SegmentConfig.shreds).",
    )
    parser.add_argument(
        "--large-mask-threshold",
        type=float,
        default=None,
        help="Paint instances of --large-mask-area pixels or more at this mask probability "
        "(SegmentConfig.large_mask_threshold), for every look.",
    )
    parser.add_argument("--large-mask-area", type=int, default=600)
    add_mask_box_options(parser)
    parser.add_argument(
        "--tag",
        default="",
        help="Write burke_figure_<fields>_<tag>.json and docs/benchmarks/burke_figure_<tag>.md "
        "(the default page is left alone).",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="Run only --looks and put them into the existing results of the same --fields "
        "and --tag (replacing a look of the same name); the other looks are kept as they were.",
    )
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="Processes simulating fields.")
    parser.add_argument(
        "--redraw",
        type=Path,
        default=None,
        help="Draw the page and plot again from a results JSON (with its run's --tag).",
    )
    args = parser.parse_args()
    tag = f"_{args.tag}" if args.tag else ""
    if args.role != "test":
        tag += f"_{args.role}"
    if args.redraw:
        publish(json.loads(args.redraw.read_text()), tag=tag)
        return
    out = ROOT / "benchmarks" / "results" / f"burke_figure_{args.fields}{tag}.json"
    previous = _previous(out, args) if args.update else None
    import torch

    from skysift.models.registry import load_model
    from skysift.morphology import GalaxyTyper
    from skysift.sim.dataset import write_dataset
    from skysift.train.segmenter import load_images
    from skysift.train.segmenter_data import SegmenterSamples, typical_field_configs

    torch.set_num_threads(args.threads)
    truth = "_burke" if args.burke_masks else ""
    directory = ROOT / "data" / f"segmenter_typical_{args.role}_{args.fields}{truth}"
    write_dataset(
        directory,
        typical_field_configs(args.role, args.fields, burke_masks=args.burke_masks),
        SegmenterSamples(),
        description=f"Burke et al.'s typical fields ({args.role} seeds)",
        workers=args.workers,
    )
    samples = load_images(str(directory))
    module, _ = load_model(
        args.model, directory=Path(args.weights_dir) if args.weights_dir else None
    )
    typer = GalaxyTyper()
    started = time.perf_counter()
    chosen = {spec: chain_parts(spec) for spec in args.looks.split(",")}
    looks = {}
    paint, mask_boxes = _paint(args), _mask_boxes(args)
    own: dict = {}
    ranked = rankings(
        module,
        samples,
        galaxy_typer=typer,
        looks=chosen,
        paint=paint,
        mask_boxes=mask_boxes,
        own_rankings=own,
    )
    readings = {}
    for spec, merged in ranked.items():
        looks[spec] = intervals(
            merged, n_first=64, resamples=args.resamples, confidence=args.confidence
        )
        readings[spec] = their_reading(
            own[spec], merged, resamples=args.resamples, confidence=args.confidence
        )
        print(spec, json.dumps(looks[spec], default=float))
    command = " ".join(["python benchmarks/burke_figure.py", *sys.argv[1:]])
    seconds = time.perf_counter() - started
    if previous is not None:
        result = previous | {
            "looks": previous["looks"] | looks,
            "their_reading": previous.get("their_reading", {}) | readings,
        }
        update = {"command": command, "looks": list(looks), "seconds": seconds}
        result["updates"] = [*previous.get("updates", []), update]
    else:
        result = {
            "command": command,
            "model": args.model,
            "role": args.role,
            "fields": len(samples),
            "n_first": 64,
            "confidence": args.confidence,
            "resamples": args.resamples,
            "threads": args.threads,
            "seconds": seconds,
            "paint": paint,
            "mask_boxes": mask_boxes,
            "truth_masks": "burke" if args.burke_masks else "isophote",
            "looks": looks,
            "their_reading": readings,
        }
    with atomic_write(out) as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=float) + "\n")
    publish(json.loads(out.read_text()), tag=tag)


def add_augment_option(parser: argparse.ArgumentParser) -> None:
    """``--augment`` (``SegmentConfig.augment``), shared with ``bench_segmenter.py``."""
    parser.add_argument(
        "--augment",
        choices=("flips", "d4"),
        default=None,
        help="Segment every image in 4 or 8 views and fuse them (SegmentConfig.augment).",
    )


def add_mask_box_options(parser: argparse.ArgumentParser) -> None:
    """``--mask-box-scale``, ``--mask-box-side`` and ``--augment`` (``SegmentConfig``'s
    options of the same names), shared with ``segmenter_limits.py``."""
    add_augment_option(parser)
    parser.add_argument(
        "--mask-box-scale",
        type=float,
        default=1.0,
        help="Draw the masks of boxes of --mask-box-side pixels or more in boxes this many "
        "times larger (SegmentConfig.mask_box_scale).",
    )
    parser.add_argument("--mask-box-side", type=float, default=24.0)


def _paint(args) -> dict:
    """:func:`as_catalog`'s large-mask options asked for on the command line."""
    if args.large_mask_threshold is None:
        return {}
    return {
        "large_mask_threshold": args.large_mask_threshold,
        "large_mask_area": args.large_mask_area,
    }


def _mask_boxes(args) -> dict:
    """:func:`predict`'s enlarged mask boxes and views asked for on the command line."""
    options = {"augment": args.augment} if args.augment else {}
    if args.mask_box_scale == 1.0:
        return options
    return {"mask_box_scale": args.mask_box_scale, "mask_box_side": args.mask_box_side} | options


def _previous(path: Path, args) -> dict:
    """The results that ``--update`` adds to, checked to be of the same run settings."""
    if not path.exists():
        sys.exit(f"--update: no results to update at {path}; run without --update first")
    previous = json.loads(path.read_text())
    asked = {
        "model": args.model,
        "fields": args.fields,
        "resamples": args.resamples,
        "confidence": args.confidence,
        "paint": _paint(args),
        "mask_boxes": _mask_boxes(args),
    }
    differ = {
        k: (previous.get(k), v) for k, v in asked.items() if (previous.get(k) or {}) != (v or {})
    }
    if differ:
        sys.exit(f"--update: {path} was made with other settings (was, asked): {differ}")
    return previous


def publish(result: dict, *, tag: str = "") -> None:
    """Write the page and its plot (``burke_figure<tag>``), and print the page."""
    page = markdown(result).replace(
        "burke_figure_intervals.png", f"burke_figure{tag}_intervals.png"
    )
    plot(result, ROOT / "docs" / "images" / f"burke_figure{tag}_intervals.png")
    with atomic_write(ROOT / "docs" / "benchmarks" / f"burke_figure{tag}.md") as tmp:
        tmp.write_text(page)
    print(page)


if __name__ == "__main__":
    main()
