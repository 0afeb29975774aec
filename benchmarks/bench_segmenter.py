"""Segmenter benchmark: COCO mAP, matched-instance statistics, morphology, centroids, Burke et
al.'s precision at 80 % recall (on the test images and on held-out typical fields), noise
robustness, the Otsu auto-annotation against truth, speed, and example overlays.

Run: ``.venv/bin/python benchmarks/bench_segmenter.py``. Everything is scored on test-seed
images never used in training or model selection: the 128 held-out images of the model card
(``data/segmenter_test``) and 64 typical fields (``data/segmenter_typical_test``), both
simulated here when missing. The chain measured is the ``Segmenter``'s: the detector
(``--model``, default ``segmenter``), the galaxy typer, and optionally a second look
(``--second-look``, re-weighted by ``--star-fraction``), the shred classifier (``--shreds``) and
test-time augmentation (``--augment``). Writes ``benchmarks/results/<chain>.json``,
``docs/benchmarks/<chain>.md`` and ``docs/images/<chain>_*.png``, where ``<chain>`` is
:func:`page_name`'s.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from burke_figure import add_augment_option
from segmenter_limits import (
    add_chain_options,
    add_refiner_and_typer_options,
    chain_from_args,
    colour_typer_from_args,
    mask_refiner_from_args,
)

from skysift.annotate import mask_iou, otsu_central_mask
from skysift.image import Image
from skysift.models.registry import load_card
from skysift.normalization import normalize
from skysift.sim.dataset import iter_shards
from skysift.train.segmenter import (
    SOFTENING,
    evaluate_segmenter,
    load_images,
    network_images,
    raw_images,
    refined_predictions,
)

ROOT = Path(__file__).resolve().parents[1]
COLOURS = {"star": "#ffd92f", "elliptical": "#fc8d62", "spiral": "#66c2a5", "other": "#8da0cb"}


def noisy_samples(directory: str, factor: float, seed: int) -> list[dict]:
    """Test samples with Gaussian noise of ``factor`` x the sky noise added to each band."""
    rng = np.random.default_rng(seed)
    samples = load_images(directory)
    for sample, shard in zip(samples, iter_shards(directory), strict=True):
        if factor == 0:
            continue
        raw = shard["image"][0]
        level, scale = shard["level"][0], shard["scale"][0]
        planes = []
        for band, lv, sc in zip(raw, level, scale, strict=True):
            noisy = band + rng.normal(0.0, factor * float(sc), band.shape).astype(np.float32)
            planes.append(normalize(noisy, float(lv), float(sc), SOFTENING))
        image = np.stack(planes)
        image[:, shard["mask"][0].astype(bool)] = 0.0
        sample["image"] = image
    return samples


def otsu_against_truth(directory: str) -> dict:
    """IoU of the Otsu mask of each central galaxy with its true footprint."""
    ious = []
    for shard in iter_shards(directory):
        if not shard["inst_central"].any():
            continue
        central = shard["inst_id"][shard["inst_central"]][0]
        image = Image.from_array(shard["image"][0], mask=shard["mask"][0].astype(bool))
        ious.append(mask_iou(otsu_central_mask(image), shard["labels"][0] == central))
    values = np.asarray(ious)
    return {
        "n": int(values.size),
        "median_iou": float(np.median(values)),
        "mean_iou": float(values.mean()),
        "fraction_iou_above_0.5": float((values > 0.5).mean()),
    }


def test_images(directory: str, n: int) -> None:
    """Simulate the ``n`` held-out test images the model card is measured on, if missing."""
    from skysift.sim.dataset import write_dataset
    from skysift.train.segmenter_data import SegmenterSamples, segmenter_field_configs

    write_dataset(
        directory,
        segmenter_field_configs("test", n),
        SegmenterSamples(),
        description="segmenter test images (held out)",
    )


def typical_field(module, directory: str, n: int, **refine) -> dict:
    """Burke et al.'s figure (and mAP) on ``n`` held-out typical fields, simulated if missing;
    ``refine`` as :func:`skysift.train.segmenter.evaluate_segmenter`'s chain options."""
    from skysift.sim.dataset import write_dataset
    from skysift.train.segmenter_data import (
        TYPICAL_GALAXY_DENSITY,
        TYPICAL_STAR_DENSITY,
        SegmenterSamples,
        typical_field_configs,
    )

    write_dataset(
        directory,
        typical_field_configs("test", n),
        SegmenterSamples(),
        description="Burke et al.'s typical fields (test seeds)",
    )
    samples = load_images(directory)
    metrics = evaluate_segmenter(module, samples, raw_images=raw_images(directory), **refine)
    return {
        "n": len(samples),
        "galaxy_density": TYPICAL_GALAXY_DENSITY,
        "star_density": TYPICAL_STAR_DENSITY,
        "mask_map_50": metrics["mask_map_50"],
        "box_map_50": metrics["box_map_50"],
        "class_accuracy_matched": metrics["matched"]["accuracy"],
        "matched": metrics["matched"],
        "precision_at_80_recall_by_snr": metrics["precision_at_80_recall_by_snr"],
        "catalog": metrics.get("catalog"),
    }


def speed(
    segmenter_module,
    card,
    test_images: list[np.ndarray],
    *,
    repeats: int = 2,
    threads: int = 2,
    chain: dict | None = None,
) -> dict:
    """Seconds per 256x256 test image (batches of 4; the detector alone, one view) and a
    2048x2048 SDSS field end to end through the ``Segmenter`` with ``chain``
    (``SegmentConfig``'s ``second_look``, ``star_fraction``, ``shreds``, ``augment``).

    The per-image time is measured on real (simulated) test images: on noise-only images the
    network finds almost nothing and skips most of its mask work, which made an earlier
    version of this benchmark report 70 ms instead of ~230 ms.
    """
    import sep
    import torch

    from skysift.models.runtime import tune_malloc
    from skysift.segment import SegmentConfig, Segmenter, segment
    from skysift.sim import FieldConfig, simulate_field

    tune_malloc()  # as the Segmenter does for its eager PyTorch inference
    torch.set_num_threads(threads)
    batches = [
        [torch.from_numpy(np.ascontiguousarray(i)) for i in test_images[k : k + 4]]
        for k in range(0, len(test_images) - 3, 4)
    ]
    segmenter_module.eval()
    with torch.no_grad():
        segmenter_module(batches[0])
        start = time.perf_counter()
        for _ in range(repeats):
            for batch in batches:
                segmenter_module(batch)
    per_tile = (time.perf_counter() - start) / (repeats * 4 * len(batches))
    field = simulate_field(
        FieldConfig(survey="sdss", size=2048, density=30, seed=1_999_001, central_galaxy="spiral")
    )
    height, width = field.footprints.shape
    fwhm = float(field.psf.fwhm_at((width - 1) / 2, (height - 1) / 2)) / field.psf.pixel_scale
    config = SegmentConfig(psf_fwhm=fwhm, **(chain or {}))
    segmenter = Segmenter(config, module=segmenter_module, card=card)
    start = time.perf_counter()
    catalog, segmentation = segment(field.image, segmenter=segmenter)
    elapsed = time.perf_counter() - start
    band = np.array(field.image.data[1], dtype=np.float32)
    start = time.perf_counter()
    background = sep.Background(band)
    band_sub = band - background
    objects, _ = sep.extract(band_sub, 1.5, err=background.globalrms, segmentation_map=True)
    sep_elapsed = time.perf_counter() - start
    return {
        "seconds_per_256_image": per_tile,
        "field_2048_seconds": elapsed,
        "field_2048_mpix_per_s": 2048 * 2048 / 1e6 / elapsed,
        "field_2048_instances": len(catalog),
        "sep_2048_seconds": sep_elapsed,
        "sep_2048_objects": len(objects),
        "ratio_to_sep": elapsed / sep_elapsed,
        "field": field,
        "segmentation": segmentation,
        "catalog": catalog,
    }


def overlay_examples(module, directory: str, path: Path, *, n: int = 4, **refine) -> None:
    """Test images (r band) with truth and predicted masks outlined by class; ``refine`` as
    :func:`skysift.train.segmenter.refined_predictions`' chain options."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = load_images(directory)
    chosen = [s for s in samples if s["central"].any()][: n - 1] + [
        s for s in samples if not s["central"].any()
    ][:1]
    predictions = refined_predictions(module, chosen, **refine)
    names = module.skysift_config.classes
    fig, axes = plt.subplots(2, len(chosen), figsize=(3.2 * len(chosen), 6.6))
    for column, (sample, prediction) in enumerate(zip(chosen, predictions, strict=True)):
        shown = sample["image"][1]
        for row, title in ((0, "truth"), (1, "skysift")):
            ax = axes[row, column]
            ax.imshow(shown, origin="lower", cmap="gray", vmin=-0.3, vmax=2.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                for ident, label in zip(sample["ids"], sample["classes"], strict=True):
                    ax.contour(
                        sample["labels"] == ident,
                        levels=[0.5],
                        colors=COLOURS[names[label - 1]],
                        linewidths=0.7,
                    )
            else:
                keep = prediction["scores"] >= 0.5
                for mask, label in zip(
                    prediction["masks"][keep, 0], prediction["labels"][keep], strict=True
                ):
                    ax.contour(
                        mask >= 0.5, levels=[0.5], colors=COLOURS[names[label - 1]], linewidths=0.7
                    )
            ax.set_title(f"{title} (seed {sample['seed']})", fontsize=8)
    handles = [plt.Line2D([], [], color=c, label=k) for k, c in COLOURS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def noise_figure(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = [r["noise_factor"] for r in rows]
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    ax.plot(factors, [r["mask_map_50"] for r in rows], "o-", label="mask mAP@0.5 (all)")
    ax.plot(factors, [r["central_accuracy"] for r in rows], "s-", label="central class accuracy")
    ax.plot(factors, [r["central_segmented"] for r in rows], "^-", label="centrals segmented")
    ax.set_xlabel("added Gaussian noise / sky noise")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reached(value: float) -> str:
    return "80 % recall not reached" if not np.isfinite(value) else f"{value:.3f}"


def _type_summary(metrics: dict) -> dict:
    """What the galaxy types change: central accuracy and mAP, all-instance mAP."""
    return {
        "central_class_accuracy": metrics["central"]["class_accuracy"],
        "central_segmented": metrics["central"]["segmented"],
        "central_mask_map_50": metrics["central_map"]["mask_map_50"],
        "mask_map_50": metrics["mask_map_50"],
        "mask_map_50_per_class": metrics["mask_map_50_per_class"],
        "class_accuracy_matched": metrics["matched"]["accuracy"],
    }


def shard_nsigma(directory: str) -> float:
    """Footprint isophote the test images were simulated with (from their manifest)."""
    manifest = json.loads((Path(directory) / "manifest.json").read_text())
    return manifest["shards"][0]["config"].get("footprint_nsigma", 1.0)


def _types_table(result: dict) -> list[str]:
    own = result.get("own_class_head")
    if own is None or result.get("galaxy_types") != "morphology":
        return [""]
    typed = _type_summary(result["test"])
    rows = [
        ("spiral/elliptical accuracy of the segmented central galaxies", "central_class_accuracy"),
        ("central galaxies, mask mAP@0.5", "central_mask_map_50"),
        ("all instances, mask mAP@0.5", "mask_map_50"),
        ("class accuracy of matched instances (score >= 0.5)", "class_accuracy_matched"),
    ]
    lines = [
        "",
        "| | Mask R-CNN class head | re-typed by `morphology` |",
        "|---|---|---|",
    ]
    lines += [f"| {text} | {own[key]:.3f} | {typed[key]:.3f} |" for text, key in rows]
    for name in ("elliptical", "spiral", "other"):
        lines.append(
            f"| mask AP@0.5, {name} | {own['mask_map_50_per_class'].get(name, float('nan')):.3f}"
            f" | {typed['mask_map_50_per_class'].get(name, float('nan')):.3f} |"
        )
    return [*lines, ""]


#: How the figure treats predictions of sources it does not score (see
#: :func:`skysift.evaluate.segmentation.precision_at_recall_by_snr`).
NEUTRAL_RULE = (
    "a prediction matched to it, or sitting on it (the unmatched instance its mask overlaps "
    "most, one prediction per instance) with a mask too wide or narrow for the IoU, is "
    "neither right nor wrong; so is one on a truth source "
    "without a mask (S/N >= 2 but too faint for one, or hidden under a brighter neighbour's "
    "footprint). A second prediction of a source, one of a star-forming clump and one of "
    "nothing count as false."
)


def _burke_by_snr(test: dict, *, title: str, images: str) -> list[str]:
    """Precision at 80 % recall among the truth brighter than a S/N cut (fainter: neutral),
    of the detections and of the catalog's instances."""
    rows = test.get("precision_at_80_recall_by_snr")
    if not rows:
        return []
    catalog = (test.get("catalog") or {}).get("precision_at_80_recall_by_snr") or [{}] * len(rows)
    lines = [
        f"## {title}",
        "",
        f"{images}; a cut keeps the truth instances at or above it as required, truth "
        f"below it is neutral: {NEUTRAL_RULE} Matches at mask IoU >= 0.5, ranked by the "
        "detector's score. `max recall` is the recall with every prediction kept: where it is "
        "below 0.8 the figure cannot be reached at any threshold. *Detections* are the "
        "detector's overlapping masks; the *catalog* is what the `Segmenter`'s label map "
        "leaves of them (painted in order of detection score, most confident last, an "
        "instance left with less than half of its mask dropped).",
        "",
        "| truth S/N >= | stars | star precision: detections / catalog | star max recall | "
        "galaxies | galaxy precision: detections / catalog | galaxy max recall: detections "
        "/ catalog |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, cat in zip(rows, catalog, strict=True):
        lines.append(
            f"| {row['snr_min']:g} | {row['star_n']} | {_reached(row['star_precision'])} / "
            f"{_reached(cat.get('star_precision', np.nan))} | {row['star_max_recall']:.3f} | "
            f"{row['galaxy_n']} | {_reached(row['galaxy_precision'])} / "
            f"{_reached(cat.get('galaxy_precision', np.nan))} | "
            f"{row['galaxy_max_recall']:.3f} / {cat.get('galaxy_max_recall', np.nan):.3f} |"
        )
    return [*lines, ""]


def _typical_cuts(typical: dict | None, group: str, *, catalog: bool = False) -> str:
    """Burke et al.'s figure for ``group`` in the typical field at S/N >= 20, 50, 100."""
    if not typical:
        return "not measured"
    source = (typical.get("catalog") or {}) if catalog else typical
    rows = {row["snr_min"]: row for row in source.get("precision_at_80_recall_by_snr", [])}
    parts = []
    for cut in (20.0, 50.0, 100.0):
        row = rows.get(cut)
        if row is not None:
            value = row[f"{group}_precision"]
            shown = f"{value:.3f}" if np.isfinite(value) else "not reached"
            parts.append(f"S/N >= {cut:g}: {shown}")
    return "; ".join(parts) or "not measured"


def _typical_section(typical: dict | None) -> list[str]:
    if not typical:
        return []
    return [
        *_burke_by_snr(
            typical,
            title="Burke et al.'s typical field",
            images=(
                f"{typical['n']} held-out DECaLS g,r,z fields (256x256, every artifact on) with "
                f"{typical['galaxy_density']:g} galaxies and {typical['star_density']:g} stars "
                "per arcmin^2 above the 5-sigma depth (Burke et al. quote their figure for a "
                "field of ~30 galaxies/arcmin^2), no central galaxy"
            ),
        ),
        f"Mask mAP@0.5 in these fields: {typical['mask_map_50']:.3f} (box "
        f"{typical['box_map_50']:.3f}); matched-pair class accuracy "
        f"{typical['class_accuracy_matched']:.3f}.",
        "",
    ]


def _chain_lines(result: dict) -> list[str]:
    """The page's words on the chain's star fraction, shred classifier, augmentation and mask
    refiner."""
    lines = []
    if result.get("star_fraction") is not None:
        lines += [
            "",
            f"Star fraction: the second look re-weighted to {result['star_fraction']:g} stars "
            "among stars and galaxies (`SegmentConfig(star_fraction=)`, the prior of a "
            "typical field).",
        ]
    if result.get("shreds"):
        lines += [
            "",
            f"Shreds: `{result['shreds']}` (`SegmentConfig(shreds=)`) scales each galaxy's "
            "score by 1 - P(shred), so that star-forming clumps of a larger galaxy rank last.",
        ]
    if result.get("augment"):
        lines += [
            "",
            f"Test-time augmentation: `{result['augment']}` (`SegmentConfig(augment=)`): every "
            "image segmented in several flipped views whose detections of one source are "
            "fused. The per-image speed below is one view of the detector; the 2048x2048 "
            "field is the whole chain.",
        ]
    if result.get("mask_refiner"):
        lines += [
            "",
            f"Mask refiner: `{result['mask_refiner']}` (`SegmentConfig(mask_refiner=)`) draws "
            "the mask of every instance with a box of at most 40 px again from a native-pixel "
            "stamp; larger instances, such as the central galaxies, keep the detector's mask.",
        ]
    if result.get("colour_typer"):
        lines += [
            "",
            f"Colour typer: `{result['colour_typer']}` (`SegmentConfig(colour_typer=)`) "
            "decides each instance's group (star, galaxy or false) last, from the chain's "
            "probabilities and its aperture colours. It learned the colours of g, r, z, so "
            "it types the DECaLS images (the typical fields and the test set's blended "
            "fields); on the SDSS g, r, i cutouts the `Segmenter` leaves it out, as here. "
            "It learned on the label map's instances, so it scores a duplicate detection as "
            "its twin: the all-detection mAP below counts those duplicates, the label map's "
            "catalog (its figures under Burke et al.'s precision) counts each source once "
            "(docs/models.md, session 44).",
        ]
    return lines


def _looks_named(looks, joiner: str) -> str:
    """A chain's second look, or its several looks joined by ``joiner``."""
    return looks if isinstance(looks, str) else joiner.join(looks)


def page_name(result: dict) -> str:
    """The benchmark's file stem (the page, its results JSON and its figures share it): the
    model's name, then its second look's, ``stars<f>`` for a star fraction, the shred
    classifier's name, the augmentation, the mask refiner's name and the colour typer's, each
    when the chain had one."""
    name = result.get("model", "segmenter")
    if result.get("second_look"):
        name += f"_{_looks_named(result['second_look'], '+')}"
    if result.get("star_fraction") is not None:
        name += f"_stars{result['star_fraction']:g}"
    for key in ("shreds", "augment", "mask_refiner", "colour_typer"):
        if result.get(key):
            name += f"_{result[key]}"
    return name


def markdown(result: dict) -> str:
    test = result["test"]
    matched = test["matched"]
    classes = matched["classes"]
    model = result.get("model", "segmenter")
    stem = page_name(result)
    lines = [
        "# Segmenter benchmark",
        "",
        f"`benchmarks/bench_segmenter.py`, {result['date']}: `{model}` model on "
        f"{result['n_test']} held-out test images (256x256; 75 % SDSS g,r,i cutouts centred on "
        "a bright elliptical or spiral galaxy, 25 % DECaLS g,r,z blended fields; every "
        "artifact on). Instances: truth sources with S/N >= 5 and a "
        f"{result['footprint_nsigma']:g}-sigma footprint of >= 4 pixels.",
        *(
            [
                "",
                "The network takes the PSF FWHM as an input: it is given the simulation's "
                "detection-band FWHM at each image's centre, as a survey's PSF model or the "
                "header's SEEING would give it.",
            ]
            if result.get("psf_channel")
            else []
        ),
        *(
            [
                "",
                f"Second look: `{_looks_named(result['second_look'], '` + `')}` "
                "(`SegmentConfig(second_look=)`; several looks: the mean of their "
                "probabilities): each instance's star/galaxy group decided again from a "
                "32x32 cutout of it, its mask and the PSF FWHM, and its score made "
                "P(source) x P(group); an instance "
                "larger than the cutout keeps the detector's class and score (docs/models.md, "
                "sessions 15 and 18). Both columns of the table below have it.",
            ]
            if result.get("second_look")
            else []
        ),
        *_chain_lines(result),
        "",
        f"Galaxy types: {result.get('galaxy_types', 'own class head')} (the `Segmenter`'s "
        "default re-types galaxy instances with the `morphology` network; "
        "`--own-types` keeps the Mask R-CNN's class head).",
        "",
        *_types_table(result),
        "## COCO mAP (torchmetrics / pycocotools, up to 1000 detections per image)",
        "",
        "| | mAP@0.5 | mAP@[0.5:0.95] |",
        "|---|---|---|",
        f"| boxes | {test['box_map_50']:.3f} | {test['box_map']:.3f} |",
        f"| masks | {test['mask_map_50']:.3f} | {test['mask_map']:.3f} |",
        f"| masks, star vs galaxy (galaxy classes merged, as Burke et al.) | "
        f"{test['star_galaxy_map']['mask_map_50']:.3f} | "
        f"{test['star_galaxy_map']['mask_map']:.3f} |",
        f"| masks, central galaxies only (the Mask Galaxy paper's task) | "
        f"{test['central_map']['mask_map_50']:.3f} | {test['central_map']['mask_map']:.3f} |",
        "",
        "The last row scores each SDSS cutout against its central galaxy alone, as the paper's "
        "images were annotated; a prediction matching another true source (mask IoU >= 0.5) is "
        "left out rather than counted as a false positive, every other prediction counts.",
        "",
        "Mask AP per class:",
        "",
        "| class | AP@0.5 | AP@[0.5:0.95] |",
        "|---|---|---|",
    ]
    for name in classes:
        lines.append(
            f"| {name} | {test['mask_map_50_per_class'].get(name, float('nan')):.3f} | "
            f"{test['mask_map_per_class'].get(name, float('nan')):.3f} |"
        )
    lines += [
        "",
        "## Matched instances (score >= 0.5, mask IoU >= 0.5)",
        "",
        "| class | precision | recall | F1 |",
        "|---|---|---|---|",
    ]
    for name in classes:
        lines.append(
            f"| {name} | {matched['precision'][name]:.3f} | {matched['recall'][name]:.3f} | "
            f"{matched['f1'][name]:.3f} |"
        )
    lines += [
        "",
        f"Class accuracy of matched pairs: {matched['accuracy']:.3f}.",
        "",
        "Confusion (rows: truth, columns: prediction):",
        "",
        "| | " + " | ".join([*classes, "missed"]) + " |",
        "|---" * (len(classes) + 2) + "|",
    ]
    for name, row in zip([*classes, "spurious"], matched["confusion"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    if "on_unmasked" in matched:
        lines += [
            "",
            f"Not spurious: {matched['on_unmasked']} predictions (score >= 0.5) on truth "
            "sources without a mask (too faint for one, or hidden under a brighter "
            "neighbour's footprint).",
        ]
    p80 = matched["precision_at_80_recall"]
    central = test["central"]
    lines += [
        "",
        "## Targets",
        "",
        "| | measured | target |",
        "|---|---|---|",
        f"| mask mAP@0.5 (all instances) | {test['mask_map_50']:.3f} | >= 0.93 |",
        f"| mask mAP@0.5 (central galaxies, the paper's task): detections | "
        f"{test['central_map']['mask_map_50']:.3f} | >= 0.93 |",
        f"| mask mAP@0.5 (central galaxies): catalog | "
        f"{(test.get('catalog') or {}).get('central_map', {}).get('mask_map_50', np.nan):.3f} "
        "| >= 0.93 |",
        f"| spiral/elliptical accuracy of central galaxies | {central['class_accuracy']:.3f} "
        f"({central['segmented']}/{central['images']} segmented) | >= 0.98 |",
        f"| galaxy precision at 80 % recall, all test images | {_reached(p80['galaxy'])} "
        "| >= 0.98 |",
        f"| star precision at 80 % recall, all test images | {_reached(p80['star'])} | >= 0.92 |",
        f"| galaxy precision at 80 % recall, typical field: detections | "
        f"{_typical_cuts(result.get('typical'), 'galaxy')} | >= 0.98 |",
        f"| galaxy precision at 80 % recall, typical field: catalog | "
        f"{_typical_cuts(result.get('typical'), 'galaxy', catalog=True)} | >= 0.98 |",
        f"| star precision at 80 % recall, typical field: detections | "
        f"{_typical_cuts(result.get('typical'), 'star')} | >= 0.92 |",
        f"| star precision at 80 % recall, typical field: catalog | "
        f"{_typical_cuts(result.get('typical'), 'star', catalog=True)} | >= 0.92 |",
        f"| central centroid offset, median (MAD): windowed centroid | "
        f"{central['centroid_offset_median']:.3f} ({central['centroid_offset_mad']:.3f}) px "
        "| <= 0.3 px |",
        f"| central centroid offset, median: centre of mass in the mask (the paper's) | "
        f"{central['centre_of_mass_offset_median']:.3f} px | <= 0.3 px |",
        "",
        *_burke_by_snr(
            test,
            title="Precision at 80 % recall by truth S/N (Burke et al.'s figure)",
            images="All test images",
        ),
        *_typical_section(result.get("typical")),
        "## Robustness to added Gaussian noise",
        "",
        "Noise of a multiple of each band's sky noise added to the raw test images before "
        "normalization (the paper's chroma-noise test on FITS-like data).",
        "",
        "| noise / sky noise | mask mAP@0.5 | central accuracy | centrals segmented |",
        "|---|---|---|---|",
    ]
    for row in result["noise"]:
        lines.append(
            f"| {row['noise_factor']:g} | {row['mask_map_50']:.3f} | "
            f"{row['central_accuracy']:.3f} | {row['central_segmented']:.3f} |"
        )
    otsu = result["otsu"]
    sp = result["speed"]
    lines += [
        "",
        f"![noise](../images/{stem}_noise.png)",
        "",
        "## Otsu auto-annotation against the true footprints",
        "",
        f"Central galaxies of the test images ({otsu['n']}): median IoU {otsu['median_iou']:.3f}"
        f", mean {otsu['mean_iou']:.3f}, IoU > 0.5 for {100 * otsu['fraction_iou_above_0.5']:.0f} "
        f"%. Otsu's threshold keeps the bright inner part of a galaxy (the true footprint "
        f"reaches the {result['footprint_nsigma']:g}-sigma isophote) and merges touching "
        "neighbours.",
        "",
        f"## Speed ({result['threads']} thread(s), PyTorch eager)",
        "",
        f"- {1000 * sp['seconds_per_256_image']:.0f} ms per 256x256 image (batches of 4).",
        f"- 2048x2048 SDSS field end to end (normalization, overlapping tiles, merging, label "
        f"map): {sp['field_2048_seconds']:.1f} s ({sp['field_2048_mpix_per_s']:.2f} Mpix/s), "
        f"{sp['field_2048_instances']} instances; SEP (background + extract with "
        f"segmentation map, one band) {sp['sep_2048_seconds']:.2f} s: "
        f"{sp['ratio_to_sep']:.0f}x SEP's time.",
        "",
        f"![examples](../images/{stem}_examples.png)",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test-dir", default=str(ROOT / "data" / "segmenter_test"))
    parser.add_argument(
        "--typical-dir",
        default=str(ROOT / "data" / "segmenter_typical_test"),
        help="Burke et al.'s typical fields (simulated here from test seeds if missing).",
    )
    parser.add_argument(
        "--test-n", type=int, default=128, help="Held-out test images (as the model card's)."
    )
    parser.add_argument("--typical-n", type=int, default=64)
    parser.add_argument("--noise", default="0,0.5,1,2,3")
    add_chain_options(parser)
    add_augment_option(parser)
    add_refiner_and_typer_options(
        parser,
        refiner_named="added to the page's name as _<name>",
        typer_named="added to the page's name as _<name>",
    )
    parser.add_argument(
        "--out-dir",
        default=str(ROOT),
        help="Root for benchmarks/results, docs/benchmarks, docs/images.",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.second_look_dir or args.shreds_dir:
        parser.error(
            "the page measures the Segmenter with shipped second looks and shred classifiers "
            "(its speed field loads them by name); --second-look-dir and --shreds-dir are "
            "segmenter_limits.py's"
        )
    if args.colour_typer and not args.second_look:
        parser.error("--colour-typer decides from the second look's probabilities")
    import torch

    torch.set_num_threads(args.threads)
    module, typer, look, shreds = chain_from_args(args)
    card = load_card(args.model, directory=Path(args.weights_dir) if args.weights_dir else None)
    root = Path(args.out_dir)
    images = root / "docs" / "images"
    test_images(args.test_dir, args.test_n)
    samples = load_images(args.test_dir)
    raws = raw_images(args.test_dir)
    refine = {
        "galaxy_typer": typer,
        "second_look": look,
        "star_fraction": args.star_fraction,
        "shreds": shreds,
        "augment": args.augment,
        "mask_refiner": mask_refiner_from_args(args),
        "colour_typer": colour_typer_from_args(args),
    }
    test = evaluate_segmenter(module, samples, raw_images=raws, **refine)
    own = (
        test
        if typer is None
        else evaluate_segmenter(module, samples, raw_images=raws, **refine | {"galaxy_typer": None})
    )
    typical = typical_field(module, args.typical_dir, args.typical_n, **refine)
    noise_rows = []
    for factor in (float(v) for v in args.noise.split(",")):
        noisy = noisy_samples(args.test_dir, factor, seed=7)
        metrics = evaluate_segmenter(module, noisy, raw_images=raws, **refine)
        central = metrics["central"]
        noise_rows.append(
            {
                "noise_factor": factor,
                "mask_map_50": metrics["mask_map_50"],
                "central_accuracy": central["class_accuracy"],
                "central_segmented": central["segmented"] / max(central["images"], 1),
            }
        )
        print(noise_rows[-1], flush=True)
    images.mkdir(parents=True, exist_ok=True)
    chain = {
        "second_look": (
            tuple(args.second_look.split("&"))
            if args.second_look and "&" in args.second_look
            else args.second_look
        ),
        "star_fraction": args.star_fraction,
        "shreds": args.shreds,
        "augment": args.augment,
        "mask_refiner": args.mask_refiner,
        "colour_typer": args.colour_typer,
    }
    name = page_name({"model": card["name"], **chain})
    noise_figure(noise_rows, images / f"{name}_noise.png")
    overlay_examples(module, args.test_dir, images / f"{name}_examples.png", **refine)
    timing = speed(
        module,
        card,
        network_images(module, samples[:32]),
        threads=args.threads,
        chain=chain,
    )
    for key in ("field", "segmentation", "catalog"):
        timing.pop(key)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "model": card["name"],
        "psf_channel": bool(card["architecture"]["config"].get("psf_channel")),
        "threads": args.threads,
        "footprint_nsigma": float(shard_nsigma(args.test_dir)),
        "n_test": len(samples),
        "galaxy_types": "the segmenter's own class head" if typer is None else "morphology",
        **chain,
        "test": test,
        "own_class_head": _type_summary(own),
        "typical": typical,
        "noise": noise_rows,
        "otsu": otsu_against_truth(args.test_dir),
        "speed": timing,
    }
    for folder in ("benchmarks/results", "docs/benchmarks"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    out = root / "benchmarks" / "results" / f"{name}.json"
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    (root / "docs" / "benchmarks" / f"{name}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
