"""Train the Mask R-CNN segmenter on simulated images (``skysift train segmenter``).

Schedule (the Mask Galaxy paper's staged training with falling learning rates, adapted to a
network trained from scratch): no COCO weights can be downloaded, so a first stage trains every
layer (the paper's stage 1 adapted a COCO ResNet to galaxies); then the paper's sequence
follows with falling rates: the heads (feature pyramid, RPN, box and mask heads) alone, then
the heads with the deeper half of the trunk, then everything. Every stage uses the paper's
augmentation: left-right and up-down flips, one of the 90/180/270-degree rotations, and
element-wise additive Gaussian noise; some images show one band in every channel so that
single-band images can be segmented. Every ``val_every`` steps the mask mAP@0.5 on the
validation images is measured and the best weights are kept. Training resumes from
``run_dir/last.pt``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skysift.models.segmenter import SegmenterConfig
from skysift.normalization import normalize
from skysift.sim.dataset import dataset_configs, iter_shards, write_dataset
from skysift.sim.field import BURKE_PEAK_FRACTIONS
from skysift.sim.presets import get_preset
from skysift.sim.seeds import seed_span
from skysift.train.segmenter_data import (
    FOOTPRINT_NSIGMA,
    TYPICAL_GALAXY_DENSITY,
    TYPICAL_STAR_DENSITY,
    SegmenterSamples,
    segmenter_field_configs,
    typical_field_configs,
)

__all__ = [
    "LONG_STAGES",
    "SCHEDULES",
    "STAGES",
    "SegmenterTrainingConfig",
    "Stage",
    "load_images",
    "prepare_data",
    "sample_targets",
    "train_segmenter",
]

log = logging.getLogger(__name__)

SOFTENING = 4.0
#: Fraction of training images shown as one band repeated (see ``_augment``).
SINGLE_BAND_FRACTION = 0.15


@dataclass(frozen=True)
class Stage:
    """One training stage: which parameter groups learn, at what rate, for how many steps."""

    name: str
    steps: int
    learning_rate: float
    trains: tuple[str, ...]  # parameter groups: "early", "deep", "heads"


#: From scratch (all layers, two rates: nothing is pretrained, and the first model was still
#: improving when its rate fell after 1,300 steps), then the paper's heads -> deeper -> all
#: with falling rates.
STAGES: tuple[Stage, ...] = (
    Stage("scratch", 1300, 2e-3, ("early", "deep", "heads")),
    Stage("scratch_slower", 1000, 7e-4, ("early", "deep", "heads")),
    Stage("heads", 200, 3e-4, ("heads",)),
    Stage("deeper", 200, 2e-4, ("deep", "heads")),
    Stage("all", 300, 7e-5, ("early", "deep", "heads")),
)
#: The standard schedule with 1,800 more steps of every layer at 3e-4 before the paper's
#: stages, and a longer last stage: the shipped network had not converged (session 9: 1,800
#: more steps from its weights raised the test mask mAP@0.5 by 0.02-0.03).
LONG_STAGES: tuple[Stage, ...] = (
    *STAGES[:2],
    Stage("longer", 1800, 3e-4, ("early", "deep", "heads")),
    *STAGES[2:4],
    Stage("all", 600, 7e-5, ("early", "deep", "heads")),
)
#: Continues a trained segmenter (``init_from``): every layer at the rate of the paper's
#: "deeper" stage, then slower. Session 11's 800-step fine-tune at 2e-4 kept the central
#: galaxies; this one is longer and uses every training image.
FINETUNE_STAGES: tuple[Stage, ...] = (
    Stage("finetune", 1000, 2e-4, ("early", "deep", "heads")),
    Stage("finetune_slower", 500, 5e-5, ("early", "deep", "heads")),
)
#: Named schedules of ``skysift train segmenter --schedule``.
SCHEDULES: dict[str, tuple[Stage, ...]] = {
    "standard": STAGES,
    "long": LONG_STAGES,
    "finetune": FINETUNE_STAGES,
}


@dataclass(frozen=True)
class SegmenterTrainingConfig:
    """Everything that fixes a segmenter training run."""

    name: str = "segmenter"
    architecture: SegmenterConfig = dataclasses.field(default_factory=SegmenterConfig)
    stages: tuple[Stage, ...] = STAGES
    train_dir: str = "data/segmenter_train"
    val_dir: str = "data/segmenter_val"
    run_dir: str = "runs/segmenter"
    n_train: int = 1500
    n_val: int = 64
    #: Burke et al.'s typical fields added to the training images (training seeds).
    n_typical: int = 0
    typical_dir: str = "data/segmenter_train_typical"
    batch_size: int = 4
    weight_decay: float = 1e-4
    noise_max: float = 0.15
    val_every: int = 250
    seed: int = 0
    threads: int = 2
    #: "truth" (simulation footprints of every instance) or "otsu" (the paper's automatic
    #: annotation of the central galaxy, see load_images); validation uses the same kind, the
    #: held-out test always the truth.
    masks: str = "truth"
    #: Start from this packaged model's weights instead of a random initialization. A PSF
    #: channel the packaged model lacks starts with zero first-layer weights, so training
    #: starts from exactly that model's output (see :func:`initial_state`).
    init_from: str | None = None
    #: Simulate the images with star-forming clumps' pixels in their parent's mask
    #: (:class:`~skysift.sim.field.FieldConfig`); the shipped models' data are without.
    clumps_in_footprints: bool = False
    #: Simulate the images with truth masks by Burke et al.'s rule (each source's light above
    #: a fixed fraction of its own peak; :data:`skysift.sim.field.BURKE_PEAK_FRACTIONS`)
    #: instead of the 2-sigma isophote; the shipped models' data are without.
    burke_masks: bool = False

    @property
    def truth_masks(self) -> dict[str, bool]:
        """How the images' truth masks are drawn: the options of
        :func:`~skysift.train.segmenter_data.segmenter_field_configs` that say it."""
        return {
            "clumps_in_footprints": self.clumps_in_footprints,
            "burke_masks": self.burke_masks,
        }

    def __post_init__(self) -> None:
        from skysift.errors import InvalidParameterError

        if self.masks not in ("truth", "otsu"):
            raise InvalidParameterError(f"masks must be 'truth' or 'otsu'; got {self.masks!r}")
        if (self.stages == FINETUNE_STAGES) != (self.init_from is not None):
            raise InvalidParameterError(
                "the 'finetune' schedule continues a trained model: give it init_from "
                "(--init-from NAME), and give init_from only with that schedule"
            )

    @property
    def selection_metric(self) -> str:
        """Validation metric that picks the kept weights (box mAP for a box-only model)."""
        return "mask_map_50" if self.architecture.masks else "box_map_50"

    @property
    def total_steps(self) -> int:
        return sum(stage.steps for stage in self.stages)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["architecture"] = self.architecture.to_dict()
        data["stages"] = [dataclasses.asdict(s) | {"trains": list(s.trains)} for s in self.stages]
        return data


def prepare_data(
    config: SegmenterTrainingConfig, *, progress: bool = True, workers: int = 1
) -> None:
    """Simulate (or finish simulating) the validation and training images, ``workers``
    fields at a time (the images do not depend on it)."""
    truth = config.truth_masks
    validation = segmenter_field_configs("validation", config.n_val, **truth)
    # training reads only the fields its config names (_training_images), so a training
    # folder may hold more (a larger --n-train or --typical-fields run's); validation is
    # read whole
    datasets = [
        (config.val_dir, validation, "validation", False),
        (
            config.train_dir,
            segmenter_field_configs("train", config.n_train, **truth),
            "training",
            True,
        ),
    ]
    if config.n_typical:
        typical = typical_field_configs("train", config.n_typical, **truth)
        datasets.append((config.typical_dir, typical, "typical-field training", True))
    for directory, configs, kind, extra_fields in datasets:
        write_dataset(
            directory,
            configs,
            SegmenterSamples(),
            progress=progress,
            description=f"segmenter {kind} images",
            workers=workers,
            extra_fields=extra_fields,
        )


def load_images(
    directory: str,
    *,
    softening: float = SOFTENING,
    annotations: str = "truth",
    seeds: Iterable[int] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Normalized images, label maps and instance classes of a segmenter dataset (only the
    fields of ``seeds``, when given).

    ``annotations="truth"`` gives every instance its simulated footprint. ``"otsu"`` is the
    Mask Galaxy paper's automatic annotation: only the central galaxy, its mask Otsu's
    threshold of the image (:func:`skysift.annotate.otsu_central_mask`), its class kept (the
    paper's came from Galaxy Zoo votes); images without a central galaxy (the blended DECaLS
    fields) are left out, as the paper had only centred cutouts.

    A sample's ``bands`` are its survey's band names, when the manifest records the field's
    configuration.
    """
    if annotations not in ("truth", "otsu"):
        raise ValueError(f"annotations must be 'truth' or 'otsu'; got {annotations!r}")
    configs = dataset_configs(directory)
    samples = []
    for shard in iter_shards(directory, seeds=seeds):
        if annotations == "otsu" and not shard["inst_central"].any():
            continue
        level, scale = shard["level"][0], shard["scale"][0]
        image = np.stack(
            [
                normalize(band, float(lv), float(sc), softening)
                for band, lv, sc in zip(shard["image"][0], level, scale, strict=True)
            ]
        )
        image[:, shard["mask"][0].astype(bool)] = 0.0
        sample = {
            "image": image,
            "labels": shard["labels"][0],
            "ids": shard["inst_id"],
            "classes": shard["inst_label"],
            "central": shard["inst_central"],
            "x": shard["inst_x"],
            "y": shard["inst_y"],
            "snr": shard["inst_snr"],
            "seed": int(shard["seed"][0]),
            "level": np.asarray(level, dtype=np.float32),
            "scale": np.asarray(scale, dtype=np.float32),
            "bad": shard["mask"][0].astype(bool),
        }
        if "unmasked_x" in shard:  # datasets written before these were recorded lack them
            sample["unmasked"] = {k: shard[f"unmasked_{k}"] for k in ("x", "y", "snr")}
        if "psf_fwhm" in shard:
            sample["psf_fwhm"] = float(shard["psf_fwhm"][0])
        config = configs.get(sample["seed"])
        if config is not None:  # the survey's band names, as the image would carry them
            sample["bands"] = get_preset(config["survey"]).band_names
        if annotations == "otsu":
            sample = _otsu_annotated(sample, shard)
        samples.append(sample)
    return samples


def _otsu_annotated(sample: dict[str, Any], shard) -> dict[str, Any]:
    """``sample`` with only its central instance, masked by Otsu's threshold."""
    from skysift.annotate import otsu_central_mask
    from skysift.image import Image

    raw = Image.from_array(shard["image"][0], mask=shard["mask"][0].astype(bool))
    central = np.flatnonzero(sample["central"])[:1]
    ident = sample["ids"][central]
    labels = np.where(otsu_central_mask(raw), ident[0], 0).astype(sample["labels"].dtype)
    return {
        **{key: value for key, value in sample.items() if key != "unmasked"},
        "labels": labels,
        **{key: sample[key][central] for key in ("ids", "classes", "central", "x", "y", "snr")},
    }


def sample_targets(labels: np.ndarray, ids: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    """torchvision detection targets (boxes, labels, masks) from an instance label map.

    Instances whose mask is empty (e.g. cropped away) are dropped. Boxes are
    ``(x0, y0, x1, y1)`` with x1, y1 one past the last pixel, as torchvision expects.
    """
    import torch
    from scipy import ndimage

    index = np.zeros(int(max(labels.max(initial=0), ids.max(initial=0))) + 1, dtype=np.int64)
    index[ids] = np.arange(1, ids.size + 1)
    dense = index[labels]  # 1..n per instance, 0 background
    slices = ndimage.find_objects(dense, max_label=ids.size)
    boxes, keep = [], []
    for k, found in enumerate(slices):
        if found is None:
            continue
        rows, cols = found
        boxes.append([cols.start, rows.start, cols.stop, rows.stop])
        keep.append(k)
    keep_array = np.asarray(keep, dtype=np.int64)
    masks = dense[np.newaxis] == (keep_array + 1)[:, np.newaxis, np.newaxis]
    return {
        "boxes": torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4)),
        "labels": torch.as_tensor(classes[keep_array].astype(np.int64)),
        "masks": torch.from_numpy(masks.astype(np.uint8)),
    }


def _augment(rng: np.random.Generator, image: np.ndarray, labels: np.ndarray, noise_max: float):
    """Flips, one rotation by 0/90/180/270 degrees, element-wise additive Gaussian noise.

    One image in ``SINGLE_BAND_FRACTION`` shows one of its bands in every channel: the
    segmenter then serves single-band images too (their band repeated), as the pipeline
    feeds them.
    """
    if rng.random() < SINGLE_BAND_FRACTION:
        image = np.repeat(image[int(rng.integers(image.shape[0]))][np.newaxis], image.shape[0], 0)
    turns = int(rng.integers(4))
    image, labels = np.rot90(image, turns, axes=(1, 2)), np.rot90(labels, turns)
    if rng.random() < 0.5:
        image, labels = image[:, :, ::-1], labels[:, ::-1]
    if rng.random() < 0.5:
        image, labels = image[:, ::-1], labels[::-1]
    image = image + rng.normal(0.0, rng.uniform(0.0, noise_max), image.shape).astype(np.float32)
    return np.ascontiguousarray(image, dtype=np.float32), np.ascontiguousarray(labels)


def _shard_count(directory: str) -> int:
    manifest = Path(directory) / "manifest.json"
    return len(json.loads(manifest.read_text())["shards"]) if manifest.exists() else 0


def parameter_groups(model) -> dict[str, list]:
    """The model's parameters in three depth groups: early trunk, deep trunk, heads."""
    trunk = model.backbone.body
    early = list(trunk.stem.parameters()) + [
        p for stage in trunk.stages[:2] for p in stage.parameters()
    ]
    deep = [p for stage in trunk.stages[2:] for p in stage.parameters()]
    trunk_ids = {id(p) for p in trunk.parameters()}
    heads = [p for p in model.parameters() if id(p) not in trunk_ids]
    return {"early": early, "deep": deep, "heads": heads}


def _stage_at(stages: tuple[Stage, ...], step: int) -> tuple[int, Stage]:
    edge = 0
    for index, stage in enumerate(stages):
        edge += stage.steps
        if step < edge:
            return index, stage
    return len(stages) - 1, stages[-1]


def predict(
    model,
    images: list[np.ndarray],
    *,
    batch_size: int = 4,
    mask_box_scale: float = 1.0,
    mask_box_side: float = 24.0,
    augment: str | None = None,
) -> list[dict[str, Any]]:
    """Eval-mode predictions (numpy) for normalized ``(bands, H, W)`` images, masks pasted
    into whole images; large instances' masks drawn in enlarged boxes, and several views
    fused, as ``SegmentConfig(mask_box_scale=, mask_box_side=, augment=)`` says."""
    import torch

    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = [
                torch.from_numpy(np.ascontiguousarray(i))
                for i in images[start : start + batch_size]
            ]
            if mask_box_scale == 1.0 and augment is None:
                results = model(batch)
            else:
                results = _pasted_detections(
                    model, batch, augment=augment, scale=mask_box_scale, side=mask_box_side
                )
            for result in results:
                out.append({k: v.numpy() for k, v in result.items()})
    return out


def _pasted_detections(
    model, batch, *, augment: str | None, scale: float, side: float
) -> list[dict[str, Any]]:
    """The Mask R-CNN's detections as the ``Segmenter`` makes them (masks in enlarged
    boxes, views fused), pasted into whole images as torchvision pastes its own."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from skysift.segment_augment import augmented_detector_outputs

    detections = augmented_detector_outputs(
        model, batch, augment=augment, mask_box_scale=scale, mask_box_side=side
    )
    out = []
    for image, d in zip(batch, detections, strict=True):
        d = dict(d)
        mask_boxes = d.pop("mask_boxes", d["boxes"])
        d["masks"] = paste_masks_in_image(d["masks"], mask_boxes, tuple(image.shape[-2:]))
        out.append(d)
    return out


def validation_map(model, samples: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Box and (Mask R-CNN) mask mAP on validation samples (torchmetrics, COCO definitions)."""
    from skysift.evaluate.segmentation import detection_map

    predictions = predict(model, network_images(model, samples))
    targets = [sample_targets(s["labels"], s["ids"], s["classes"]) for s in samples]
    return detection_map(predictions, targets, masks=model.skysift_config.masks)


def refined_predictions(
    model,
    samples: list[dict[str, Any]],
    *,
    galaxy_typer=None,
    second_look=None,
    star_fraction: float | None = None,
    shreds=None,
    mask_box_scale: float = 1.0,
    mask_box_side: float = 24.0,
    augment: str | None = None,
    mask_refiner=None,
    colour_typer=None,
) -> list[dict[str, Any]]:
    """:func:`predict` on samples of :func:`load_images`, refined as the ``Segmenter`` does
    (:func:`refine`)."""
    boxes = {"mask_box_scale": mask_box_scale, "mask_box_side": mask_box_side, "augment": augment}
    return refine(
        predict(model, network_images(model, samples), **boxes),
        samples,
        model.skysift_config.classes,
        galaxy_typer=galaxy_typer,
        second_look=second_look,
        star_fraction=star_fraction,
        shreds=shreds,
        mask_refiner=mask_refiner,
        colour_typer=colour_typer,
    )


def refine(
    predictions: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    classes: tuple[str, ...],
    *,
    galaxy_typer=None,
    second_look=None,
    star_fraction: float | None = None,
    shreds=None,
    mask_refiner=None,
    colour_typer=None,
) -> list[dict[str, Any]]:
    """A detector's predictions on samples of :func:`load_images`, refined as the
    ``Segmenter`` does; the predictions are not modified, so one set can be refined several
    ways.

    With ``second_look`` (a :class:`skysift.second_look.SecondLook`) each instance's
    star/galaxy group is decided again (:func:`skysift.second_look.relook`, at each sample's
    ``psf_fwhm``, re-weighted to ``star_fraction`` when given); with ``shreds`` (a
    :class:`skysift.shreds.ShredClassifier`) each galaxy's score is then scaled by 1 -
    P(shred) (:func:`skysift.shreds.unshred`); with ``galaxy_typer`` (a
    :class:`skysift.morphology.GalaxyTyper`) the galaxy instances are then re-typed
    (:func:`skysift.morphology.retype_galaxies`); with ``mask_refiner`` (a callable of
    :func:`skysift.mask_refine.refined_masks`) the small instances' masks are then drawn
    again; with ``colour_typer`` (a :class:`skysift.colour_typer.ColourTyper`) each
    instance the label map keeps is then typed by colour and the others dropped (with
    ``galaxy_typer``, a star it makes a galaxy gets a galaxy type), except in the samples
    whose ``bands`` are not the typer's (the ``Segmenter`` leaves it out on such an image).
    """
    if second_look is not None:
        from skysift.second_look import relook

        _require_psf_fwhm(samples)
        predictions = [
            relook(
                p,
                s["image"],
                second_look,
                psf_fwhm=s["psf_fwhm"],
                classes=classes,
                star_fraction=star_fraction,
            )
            for p, s in zip(predictions, samples, strict=True)
        ]
    if shreds is not None:
        from skysift.shreds import unshred

        _require_psf_fwhm(samples)
        predictions = [
            unshred(p, s["image"], shreds, psf_fwhm=s["psf_fwhm"], classes=classes)
            for p, s in zip(predictions, samples, strict=True)
        ]
    if galaxy_typer is not None:
        from skysift.morphology import retype_galaxies

        predictions = [
            retype_galaxies(p, s["image"], galaxy_typer, classes=classes)
            for p, s in zip(predictions, samples, strict=True)
        ]
    if mask_refiner is not None:
        from skysift.mask_refine import refined_masks

        _require_psf_fwhm(samples)
        predictions = [
            refined_masks(p, s["image"], mask_refiner, psf_fwhm=s["psf_fwhm"])
            for p, s in zip(predictions, samples, strict=True)
        ]
    if colour_typer is not None:
        _require_psf_fwhm(samples)
        predictions = [
            p
            if colour_typer.other_bands(s.get("bands", ())) is not None
            else _colour_retyped(p, s, colour_typer, classes, galaxy_typer=galaxy_typer)
            for p, s in zip(predictions, samples, strict=True)
        ]
    return predictions


def sample_in_units(sample: dict[str, Any], *, softening: float = SOFTENING) -> np.ndarray:
    """The image of a :func:`load_images` sample in its own units again (the normalization
    undone; masked pixels at the band's level)."""
    if "level" not in sample:
        raise ValueError("the sample has no level and scale (written by an older load_images)")
    level = np.asarray(sample["level"], dtype=np.float32)[:, None, None]
    scale = np.asarray(sample["scale"], dtype=np.float32)[:, None, None]
    return np.sinh(sample["image"]) * (softening * scale) + level


def sample_sky_subtracted(sample: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A :func:`load_images` sample's bands in its own units less SEP's sky, and each band's
    noise (:func:`skysift.colour_typer.sky_subtracted`): what the colour typer measures."""
    from skysift.colour_typer import sky_subtracted

    return sky_subtracted(sample_in_units(sample), sample.get("bad"))


def _colour_retyped(
    prediction: dict[str, Any], sample: dict[str, Any], typer, classes, *, galaxy_typer=None
):
    """The instances the label map keeps under the chain's scores, typed by colour (the
    ``Segmenter``'s rule: the detections painted over by a more confident twin are dropped
    first, as the typer never saw them in training); with ``galaxy_typer`` each star it
    makes a galaxy gets a galaxy type, as in the ``Segmenter``."""
    from skysift.colour_typer import instance_rows, retype_by_colour
    from skysift.evaluate.segmentation import kept_instances

    prediction = instance_rows(prediction, kept_instances(prediction))
    image, rms = sample_sky_subtracted(sample)
    masks = np.asarray(prediction["masks"])
    masks = masks[:, 0] >= 0.5 if masks.ndim == 4 else masks.astype(bool)
    pixels = [np.nonzero(mask) for mask in masks]
    typed = retype_by_colour(
        prediction,
        pixels,
        typer,
        image=image,
        rms=rms,
        psf_fwhm=sample["psf_fwhm"],
        classes=classes,
    )
    if galaxy_typer is None:
        return typed
    from skysift.morphology import type_new_galaxies

    return type_new_galaxies(typed, prediction, sample["image"], galaxy_typer, classes=classes)


def segmenter_catalogs(
    model,
    samples: list[dict[str, Any]],
    *,
    galaxy_typer=None,
    second_look=None,
    mask_threshold: float = 0.5,
    star_fraction: float | None = None,
    shreds=None,
    large_mask_threshold: float | None = None,
    large_mask_area: int = 600,
    mask_box_scale: float = 1.0,
    mask_box_side: float = 24.0,
    augment: str | None = None,
    mask_refiner=None,
    colour_typer=None,
    chunk: int = 32,
) -> list[dict[str, Any]]:
    """The ``Segmenter``'s catalog of each sample: :func:`refined_predictions`, painted
    (:func:`skysift.evaluate.segmentation.as_catalog`) with masks where the mask
    probability reaches ``mask_threshold`` (``SegmentConfig.mask_threshold``; large
    instances at ``large_mask_threshold``, large boxes' masks drawn in enlarged boxes, and
    the views of ``augment`` fused, as ``SegmentConfig`` says).

    The samples are predicted and painted ``chunk`` at a time, so that only that many
    images' whole-image mask probabilities are held at once (each image is refined on its
    own, so the catalogs do not depend on ``chunk``)."""
    from skysift.evaluate.segmentation import as_catalog

    large = {"large_mask_threshold": large_mask_threshold, "large_mask_area": large_mask_area}
    step = max(1, chunk)
    catalogs = []
    for start in range(0, len(samples), step):
        predictions = refined_predictions(
            model,
            samples[start : start + step],
            galaxy_typer=galaxy_typer,
            second_look=second_look,
            star_fraction=star_fraction,
            shreds=shreds,
            mask_box_scale=mask_box_scale,
            mask_box_side=mask_box_side,
            augment=augment,
            mask_refiner=mask_refiner,
            colour_typer=colour_typer,
        )
        catalogs += [as_catalog(p, mask_threshold=mask_threshold, **large) for p in predictions]
    return catalogs


def network_images(model, samples: list[dict[str, Any]]) -> list[np.ndarray]:
    """The network's inputs for samples of :func:`load_images`: their bands, with the PSF
    channel appended when the model has one
    (:func:`skysift.models.segmenter.with_psf_channel`)."""
    if not model.skysift_config.psf_channel:
        return [s["image"] for s in samples]
    _require_psf_fwhm(samples)
    from skysift.models.segmenter import with_psf_channel

    return [with_psf_channel(s["image"], s["psf_fwhm"]) for s in samples]


def _require_psf_fwhm(samples: list[dict[str, Any]]) -> None:
    from skysift.errors import InvalidParameterError

    missing = [s["seed"] for s in samples if "psf_fwhm" not in s]
    if missing:
        raise InvalidParameterError(
            f"{len(missing)} images (seeds {missing[:3]}...) have no recorded PSF FWHM, which "
            "a model with a PSF channel needs; simulate them again (delete their directory)"
        )


def train_segmenter(config: SegmenterTrainingConfig, *, progress: bool = True) -> Path:
    """Train (resuming if possible); returns the path of the best weights (safetensors)."""
    import torch

    from skysift.models.runtime import tune_malloc
    from skysift.models.segmenter import build_segmenter, with_psf_channel
    from skysift.progress import progress_iter
    from skysift.train.checkpoints import (
        append_log,
        random_state,
        restore_random_state,
        save_weights,
    )

    tune_malloc()
    torch.set_num_threads(config.threads)
    run = Path(config.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = build_segmenter(config.architecture)
    if config.init_from is not None:
        model.load_state_dict(initial_state(config.init_from, config.architecture))
    groups = parameter_groups(model)
    optimizer = torch.optim.AdamW(
        [{"params": groups[name], "name": name} for name in ("early", "deep", "heads")],
        lr=config.stages[0].learning_rate,
        weight_decay=config.weight_decay,
    )
    rng = np.random.default_rng(config.seed)
    start_step, best = 0, -1.0
    last = run / "last.pt"
    if last.exists():
        state = torch.load(last, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_random_state(rng, state)
        start_step, best = state["step"], state["best"]
        log.info("resuming from step %d (best %s %.4f)", start_step, config.selection_metric, best)
    train = _training_images(config)
    val = load_images(config.val_dir, annotations=config.masks)
    loaded_shards = _shard_count(config.train_dir)
    if not train or not val:
        raise ValueError(
            f"no training or validation images in {config.train_dir}, {config.val_dir}"
        )
    if config.architecture.psf_channel:
        _require_psf_fwhm(train + val)
    running: list[float] = []
    started = time.perf_counter()
    for step in progress_iter(
        range(start_step, config.total_steps), "training segmenter", enabled=progress
    ):
        _, stage = _stage_at(config.stages, step)
        for group in optimizer.param_groups:
            group["lr"] = stage.learning_rate if group["name"] in stage.trains else 0.0
        model.train()
        images, targets = [], []
        for index in rng.integers(len(train), size=config.batch_size):
            sample = train[int(index)]
            image, labels = _augment(rng, sample["image"], sample["labels"], config.noise_max)
            if config.architecture.psf_channel:
                image = with_psf_channel(image, sample["psf_fwhm"])
            images.append(torch.from_numpy(image))
            targets.append(sample_targets(labels, sample["ids"], sample["classes"]))
        losses = model(images, targets)
        loss = sum(losses.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        running.append(float(loss.detach()))
        done = step + 1
        if done % config.val_every == 0 or done == config.total_steps:
            metrics = validation_map(model, val)
            if _shard_count(config.train_dir) > loaded_shards:  # still being simulated
                loaded_shards = _shard_count(config.train_dir)
                train = _training_images(config)
            entry = {
                "step": done,
                "stage": stage.name,
                "loss": float(np.mean(running)),
                **metrics,
                "train_images": len(train),
                "minutes": (time.perf_counter() - started) / 60,
            }
            running = []
            append_log(run / "train.log", entry)
            if metrics[config.selection_metric] > best:
                best = metrics[config.selection_metric]
                save_weights(model, run / "best.safetensors")
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    **random_state(rng),
                    "step": done,
                    "best": best,
                },
                last,
            )
    return run / "best.safetensors"


def initial_state(name: str, architecture: SegmenterConfig) -> dict[str, Any]:
    """Weights of packaged model ``name`` (or the card path ``<folder>/<name>.json``)
    fitted to ``architecture``.

    The two architectures must agree except for the PSF channel: when ``architecture`` adds
    one, the stem's weights for it are zero, so the network computes what ``name`` computes.

    Raises
    ------
    InvalidParameterError
        ``name`` is not a segmenter, or its architecture differs in anything else.
    """
    from skysift.errors import InvalidParameterError
    from skysift.models.registry import load_model, model_location
    from skysift.models.segmenter import with_zero_psf_weights

    model_name, folder = model_location(name)
    base, card = load_model(model_name, directory=folder)
    base_config = getattr(base, "skysift_config", None)
    if card["architecture"]["kind"] != "segmenter" or base_config is None:
        raise InvalidParameterError(f"--init-from {name}: not a segmenter model")
    adds_psf = architecture.psf_channel and not base_config.psf_channel
    have = base_config.to_dict()
    want = dataclasses.replace(architecture, psf_channel=False) if adds_psf else architecture
    differs = sorted(k for k, v in want.to_dict().items() if have.get(k) != v)
    if differs:
        raise InvalidParameterError(
            f"--init-from {name}: its architecture differs from the one being trained in {differs}"
        )
    state = base.state_dict()
    return with_zero_psf_weights(state) if adds_psf else state


def positive_integers(text: str, option: str, *, count: int | None = None) -> tuple[int, ...]:
    """A command-line list of positive whole numbers separated by commas (``count`` of
    them when given, else at least two); a clear error naming ``option`` otherwise."""
    from skysift.errors import InvalidParameterError

    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    right_count = len(values) == count if count is not None else len(values) >= 2
    if not right_count or min(values, default=0) < 1:
        wanted = f"{count}" if count is not None else "two or more"
        raise InvalidParameterError(
            f"{option} takes {wanted} positive whole numbers separated by commas; got {text!r}"
        )
    return values


def trunk_architecture(
    *, widths: str | None = None, blocks: str | None = None, fpn_channels: int | None = None
) -> dict[str, Any]:
    """:class:`SegmenterConfig` options from ``skysift train segmenter``'s ``--widths``,
    ``--blocks`` and ``--fpn-channels`` (None keeps the default).

    Raises
    ------
    InvalidParameterError
        A list that is not 5 (widths: stem and four stages) or 4 (blocks) positive integers,
        or a non-positive pyramid width.
    """
    options: dict[str, Any] = {}
    if widths is not None:
        options["widths"] = positive_integers(widths, "--widths", count=5)
    if blocks is not None:
        options["blocks"] = positive_integers(blocks, "--blocks", count=4)
    if fpn_channels is not None:
        if fpn_channels < 1:
            from skysift.errors import InvalidParameterError

            raise InvalidParameterError(f"--fpn-channels must be >= 1; got {fpn_channels}")
        options["fpn_channels"] = fpn_channels
    return options


def architecture_command_options(architecture: SegmenterConfig) -> str:
    """The ``--widths``, ``--blocks`` and ``--fpn-channels`` that give ``architecture``'s
    trunk, for those that differ from the default (the card's command)."""
    default = SegmenterConfig()
    text = ""
    if architecture.widths != default.widths:
        text += " --widths " + ",".join(str(v) for v in architecture.widths)
    if architecture.blocks != default.blocks:
        text += " --blocks " + ",".join(str(v) for v in architecture.blocks)
    if architecture.fpn_channels != default.fpn_channels:
        text += f" --fpn-channels {architecture.fpn_channels}"
    return text


def default_segmenter_name(*, box_only: bool = False, psf_channel: bool = False) -> str:
    """The name ``skysift train segmenter`` gives a model when ``--name`` is not given."""
    name = "segmenter_boxes" if box_only else "segmenter"
    return f"{name}_psf" if psf_channel else name


def checked_model_name(name: str) -> str:
    """``name`` when it can name a weights file and card (lower-case letters, digits and
    underscores, starting with a letter); else a clear error."""
    from skysift.errors import InvalidParameterError

    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise InvalidParameterError(
            f"model name {name!r}: use lower-case letters, digits and underscores, starting "
            "with a letter (it names the weights file and the card)"
        )
    return name


def _training_images(config: SegmenterTrainingConfig) -> list[dict[str, Any]]:
    truth = config.truth_masks
    named = segmenter_field_configs("train", config.n_train, **truth)
    train = named_images(config.train_dir, named, annotations=config.masks)
    if config.n_typical:
        typical = typical_field_configs("train", config.n_typical, **truth)
        train += named_images(config.typical_dir, typical, annotations=config.masks)
    return train


def named_images(directory: str, configs, *, annotations: str = "truth") -> list[dict[str, Any]]:
    """The images of ``configs`` in ``directory``, and only those (:func:`load_images`, in
    the folder's order): a data folder may hold more fields (another run's ``--n-train``,
    ``--typical-fields`` or ``--n-train-fields``), and reading them all would train on
    another set than the card records. A folder holding none of them (data of one's own)
    is read whole; one holding some of them is refused by name."""
    from skysift.errors import InvalidParameterError
    from skysift.sim.dataset import dataset_seeds

    held = set(dataset_seeds(directory))
    wanted = [c.seed for c in configs]
    found = [seed for seed in wanted if seed in held]
    if not found:
        return load_images(directory, annotations=annotations)
    if len(found) < len(wanted):
        raise InvalidParameterError(
            f"{directory}: holds {len(found)} of the {len(wanted)} fields the run names; "
            "simulate the rest first (the training commands do)"
        )
    return load_images(directory, annotations=annotations, seeds=wanted)


def evaluate_segmenter(
    model,
    samples: list[dict[str, Any]],
    *,
    raw_images: list[np.ndarray] | None = None,
    centroid_sigma: float = 1.5,
    score_threshold: float = 0.5,
    galaxy_typer=None,
    second_look=None,
    star_fraction: float | None = None,
    shreds=None,
    augment: str | None = None,
    mask_refiner=None,
    colour_typer=None,
) -> dict[str, Any]:
    """Test metrics of a segmenter on samples of :func:`load_images`.

    With ``second_look`` (re-weighted to ``star_fraction`` when given), ``shreds``,
    ``galaxy_typer``, ``mask_refiner`` and ``colour_typer`` the predictions are refined as
    the ``Segmenter`` does (:func:`refined_predictions`); with ``augment`` the detector's
    views are fused as ``SegmentConfig(augment=)`` does.

    Returns mask and box mAP (all instances, per class), the matched-instance statistics of
    :func:`skysift.evaluate.segmentation.confusion_statistics`, and for the central galaxies of
    the Galaxy-Zoo-like cutouts: how many were segmented (IoU >= 0.5), the accuracy of their
    spiral/elliptical class, and the offset from the truth centre of the windowed centroid of
    the sky-subtracted light in the predicted mask and of its centre of mass (both as
    :mod:`skysift.segment` measures them on ``raw_images``). A box-only model is scored on
    boxes throughout (matches by box IoU, the box as its mask for the centroids).

    When every sample carries its truth sources without a mask (``unmasked``; datasets
    written since these were recorded), a detection of one of them counts neither as right
    nor as wrong in the matched statistics and Burke et al.'s figure
    (``unmasked_sources_known`` says whether they did).

    ``catalog`` holds Burke et al.'s figure and the central-galaxy mAP again, on the
    instances the ``Segmenter``'s label map leaves (:func:`skysift.evaluate.segmentation.
    as_catalog`): the detector's masks overlap, the catalog's do not.
    """
    from skysift.evaluate.segmentation import (
        as_catalog,
        confusion_statistics,
        detection_map,
        mask_centroid,
        match_predictions,
        precision_at_recall_by_snr,
    )
    from skysift.image import Image
    from skysift.segment import instance_centroids, sky_subtracted_light

    classes = model.skysift_config.classes
    has_masks = model.skysift_config.masks
    by = "mask" if has_masks else "box"
    predictions = refined_predictions(
        model,
        samples,
        galaxy_typer=galaxy_typer,
        second_look=second_look,
        star_fraction=star_fraction,
        shreds=shreds,
        augment=augment,
        mask_refiner=mask_refiner,
        colour_typer=colour_typer,
    )
    targets = [sample_targets(s["labels"], s["ids"], s["classes"]) for s in samples]
    metrics: dict[str, Any] = detection_map(
        predictions, targets, class_metrics=True, masks=has_masks
    )
    names = {k + 1: name for k, name in enumerate(classes)}
    for key in [k for k in metrics if k.endswith("_per_class")]:
        metrics[key] = {names[k]: v for k, v in metrics[key].items()}
    unmasked = [s["unmasked"] for s in samples] if all("unmasked" in s for s in samples) else None
    metrics["matched"] = confusion_statistics(
        predictions, targets, classes, score_threshold=score_threshold, by=by, unmasked=unmasked
    )
    metrics["precision_at_80_recall_by_snr"] = precision_at_recall_by_snr(
        predictions, targets, [s["snr"] for s in samples], classes, by=by, unmasked=unmasked
    )
    metrics["unmasked_sources_known"] = unmasked is not None
    if has_masks:  # the same on the label map's instances, as the Segmenter delivers them
        catalogs = [as_catalog(p) for p in predictions]
        metrics["catalog"] = {
            "precision_at_80_recall_by_snr": precision_at_recall_by_snr(
                catalogs, targets, [s["snr"] for s in samples], classes, unmasked=unmasked
            ),
            "central_map": central_galaxy_map(catalogs, samples),
        }
    n_central = found = correct = 0
    offsets, mass_offsets = [], []
    for index, (sample, prediction) in enumerate(zip(samples, predictions, strict=True)):
        if not sample["central"].any():
            continue
        n_central += 1
        central = int(np.flatnonzero(sample["central"])[0])
        target = sample_targets(
            np.where(sample["labels"] == sample["ids"][central], sample["ids"][central], 0),
            sample["ids"][central : central + 1],
            sample["classes"][central : central + 1],
        )
        confident = prediction["scores"] >= score_threshold
        kept = {key: value[confident] for key, value in prediction.items()}
        p, _ = match_predictions(kept, target, by=by)
        if not p.size:
            continue
        found += 1
        label = int(kept["labels"][p[0]])
        correct += label == int(sample["classes"][central])
        if raw_images is not None:
            shape = raw_images[index].shape[-2:]
            sources = np.zeros(shape, dtype=bool)
            for k in range(len(kept["scores"])):
                sources |= _instance_mask(kept, k, shape)
            light = sky_subtracted_light(Image.from_array(raw_images[index]), sources=sources)
        else:
            light = sample["image"].sum(axis=0)
        mask = _instance_mask(kept, p[0], light.shape)
        xm, ym = mask_centroid(light, mask)
        x, y = instance_centroids(
            light,
            mask.astype(np.int32),
            sigma=centroid_sigma,
            fallback=(np.array([xm]), np.array([ym])),
        )
        offsets.append(np.hypot(x[0] - sample["x"][central], y[0] - sample["y"][central]))
        mass_offsets.append(np.hypot(xm - sample["x"][central], ym - sample["y"][central]))
    offsets_array = np.asarray(offsets)
    metrics["central_map"] = central_galaxy_map(predictions, samples, by=by)
    metrics["star_galaxy_map"] = _two_class_map(predictions, targets, masks=has_masks)
    metrics["central"] = {
        "images": n_central,
        "segmented": found,
        "class_accuracy": correct / found if found else float("nan"),
        "centroid_offset_median": float(np.median(offsets_array)) if found else float("nan"),
        "centroid_offset_mad": float(np.median(np.abs(offsets_array - np.median(offsets_array))))
        if found
        else float("nan"),
        "centre_of_mass_offset_median": float(np.median(mass_offsets)) if found else float("nan"),
    }
    return metrics


def _instance_mask(prediction: dict[str, Any], index: int, shape) -> np.ndarray:
    """Predicted mask of one instance; for a box-only model, its box filled."""
    if "masks" in prediction:
        return prediction["masks"][index, 0] >= 0.5
    x0, y0, x1, y1 = np.round(prediction["boxes"][index]).astype(int)
    mask = np.zeros(shape, dtype=bool)
    mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return mask


def central_galaxy_map(
    predictions: list[dict[str, Any]], samples: list[dict[str, Any]], *, by: str = "mask"
) -> dict[str, Any]:
    """Mask/box mAP of the central galaxies alone: the Mask Galaxy paper's task.

    The paper's images annotate only the central galaxy. Here every image with a central
    galaxy is scored against that one instance; a prediction that matches another true
    instance (IoU >= 0.5: a neighbour or star the paper would not have annotated) is left
    out rather than counted as a false positive, while every other prediction counts.
    ``by="box"`` matches by box IoU and scores boxes alone (box-only models).
    """
    from skysift.evaluate.segmentation import detection_map, match_predictions

    kept_predictions, central_targets = [], []
    for sample, prediction in zip(samples, predictions, strict=True):
        if not sample["central"].any():
            continue
        central = int(np.flatnonzero(sample["central"])[0])
        ids = sample["ids"]
        everyone = sample_targets(sample["labels"], ids, sample["classes"])
        p, t = match_predictions(prediction, everyone, by=by)
        # sample_targets drops instances without pixels: map back to positions in ``ids``
        present = np.flatnonzero(np.isin(ids, np.unique(sample["labels"])))
        others = p[present[t] != central]
        keep = np.setdiff1d(np.arange(len(prediction["scores"])), others)
        kept_predictions.append({key: value[keep] for key, value in prediction.items()})
        only = np.where(sample["labels"] == ids[central], ids[central], 0)
        central_targets.append(
            sample_targets(
                only, ids[central : central + 1], sample["classes"][central : central + 1]
            )
        )
    if not central_targets:
        return {}
    return detection_map(kept_predictions, central_targets, masks=by == "mask")


def _two_class_map(predictions, targets, *, masks: bool = True) -> dict[str, Any]:
    """mAP with the galaxy classes merged (star vs galaxy, as Burke et al. score)."""
    import torch

    from skysift.evaluate.segmentation import detection_map

    merged_predictions = [
        {**p, "labels": np.minimum(np.asarray(p["labels"]), 2)} for p in predictions
    ]
    merged_targets = [{**t, "labels": torch.clamp(t["labels"], max=2)} for t in targets]
    return detection_map(merged_predictions, merged_targets, class_metrics=True, masks=masks)


def raw_images(directory: str) -> list[np.ndarray]:
    """The raw (ADU) images of a segmenter dataset, in :func:`load_images` order."""
    return [shard["image"][0] for shard in iter_shards(directory)]


def card_for(config: SegmenterTrainingConfig) -> dict[str, Any]:
    """Model card skeleton of a segmenter trained with ``config``."""
    task = (
        "instance segmentation: sources' boxes, masks and class "
        "(star, elliptical, spiral, other galaxy) with Mask R-CNN"
        if config.architecture.masks
        else "detection: sources' boxes and class (star, elliptical, spiral, other galaxy) "
        "with Faster R-CNN (the box-only variant of the segmenter; not a pipeline stage)"
    )
    if config.architecture.psf_channel:
        task += (
            "; the PSF FWHM is an input (SegmentConfig(psf_fwhm=), the header's SEEING, or "
            "measured on the image's stars)"
        )
    schedule = next((k for k, v in SCHEDULES.items() if v == config.stages), None)
    default_name = default_segmenter_name(
        box_only=not config.architecture.masks, psf_channel=config.architecture.psf_channel
    )
    options = (
        (" --masks otsu" if config.masks != "truth" else "")
        + ("" if config.architecture.masks else " --box-only")
        + (f" --schedule {schedule}" if schedule not in (None, "standard") else "")
        + (f" --typical-fields {config.n_typical}" if config.n_typical else "")
        + (" --psf-channel" if config.architecture.psf_channel else "")
        + architecture_command_options(config.architecture)
        + (f" --init-from {config.init_from}" if config.init_from else "")
        + (" --clumps-in-footprints" if config.clumps_in_footprints else "")
        + (" --burke-masks" if config.burke_masks else "")
        + (f" --name {config.name}" if config.name != default_name else "")
        # CPU kernels reduce in another order on another thread count
        + (f" --threads {config.threads}" if config.threads != 2 else "")
    )
    images = (
        "256x256: SDSS g,r,i cutouts centred on a bright elliptical or spiral galaxy (75 %) and "
        "DECaLS g,r,z blended fields (25 %); all artifacts"
    )
    if config.n_typical:
        images += (
            f"; plus {config.n_typical} of Burke et al.'s typical DECaLS fields "
            f"({TYPICAL_GALAXY_DENSITY:g} galaxies + {TYPICAL_STAR_DENSITY:g} stars /arcmin^2)"
        )
    training: dict[str, Any] = {
        "command": f"skysift train segmenter --seed {config.seed}{options}",
        "seed": config.seed,
        "config": config.to_dict(),
    }
    if config.init_from:
        from skysift.models.registry import load_card, model_location

        model_name, folder = model_location(config.init_from)
        base = load_card(model_name, directory=folder)
        training["initialized_from"] = {
            "name": config.init_from,
            "sha256": base["sha256"],
            "command": base["training"]["command"],
        }
    seeds = {
        "train": seed_span(segmenter_field_configs("train", config.n_train)),
        "validation": seed_span(segmenter_field_configs("validation", config.n_val)),
    }
    if config.n_typical:
        seeds["train_typical"] = seed_span(typical_field_configs("train", config.n_typical))
    instances = (
        f"truth sources with S/N >= 5 and a {FOOTPRINT_NSIGMA:g}-sigma footprint of >= 4 pixels"
    )
    if config.burke_masks:
        instances = (
            "truth sources with S/N >= 5 and a footprint of >= 4 pixels by Burke et al.'s rule "
            f"(light above {BURKE_PEAK_FRACTIONS[0]:g} (stars) / {BURKE_PEAK_FRACTIONS[1]:g} "
            "(galaxies) of the source's own noiseless peak, smoothed)"
        )
    if config.clumps_in_footprints:
        instances += "; star-forming clumps' pixels in their parent galaxy's mask"
    return {
        "name": config.name,
        "task": task,
        "data_seeds": seeds,
        "architecture": {"kind": "segmenter", "config": config.architecture.to_dict()},
        "normalization": {
            "kind": "asinh_mad",
            "softening": SOFTENING,
            "formula": "per band: asinh((x - median) / (softening * 1.4826 * MAD)), statistics "
            "of the whole image's unmasked pixels; masked pixels 0; a single band is repeated "
            "into every channel",
        },
        "classes": list(config.architecture.classes),
        "trained_on": {
            "images": images,
            "instances": instances,
        },
        "training": training,
    }


def finish_segmenter(
    config: SegmenterTrainingConfig,
    best_weights: Path,
    *,
    out_dir: Path | None = None,
    test_dir: str = "data/segmenter_test",
    n_test: int = 128,
    progress: bool = True,
) -> Path:
    """Measure held-out test images and write weights + card (fp16 when mAP holds)."""
    import torch
    from safetensors.torch import load_file

    from skysift.models.registry import save_model, weights_dir
    from skysift.models.segmenter import build_segmenter

    model = build_segmenter(config.architecture)
    model.load_state_dict(load_file(str(best_weights)))
    model.eval()
    val = load_images(config.val_dir)
    key = config.selection_metric
    full = validation_map(model, val)
    half = build_segmenter(config.architecture)
    half.load_state_dict({k: v.half().to(v.dtype) for k, v in model.state_dict().items()})
    half.eval()
    fp16 = abs(validation_map(half, val)[key] - full[key]) < 0.005
    write_dataset(
        test_dir,
        segmenter_field_configs("test", n_test, **config.truth_masks),
        SegmenterSamples(),
        progress=progress,
        description="segmenter test images (held out)",
    )
    shipped = half if fp16 else model
    test = evaluate_segmenter(shipped, load_images(test_dir), raw_images=raw_images(test_dir))
    card = card_for(config)
    card["data_seeds"]["test"] = seed_span(segmenter_field_configs("test", n_test))
    card["parameters"] = int(sum(p.numel() for p in model.parameters()))
    card["metrics"] = card_metrics(config, test, validation=full[key], n_test=n_test)
    Path(config.run_dir, "test_metrics.json").write_text(
        json.dumps(test, indent=1, default=str) + "\n"
    )
    with torch.no_grad():
        return save_model(shipped, card, out_dir or weights_dir(), fp16=fp16)


def card_metrics(
    config: SegmenterTrainingConfig, test: dict[str, Any], *, validation: float, n_test: int
) -> dict[str, Any]:
    """The model card's metrics from :func:`evaluate_segmenter`'s held-out ``test`` result
    and the ``validation`` value of the selection metric."""
    key = config.selection_metric
    kind = key.split("_")[0]  # "mask", or "box" for a box-only model
    metrics = {
        f"validation_{key}": validation,
        "test_images": n_test,
        "test_mask_map_50": test.get("mask_map_50"),
        "test_mask_map": test.get("mask_map"),
        "test_box_map_50": test["box_map_50"],
        "test_box_map": test["box_map"],
        f"test_central_{kind}_map_50": test["central_map"].get(f"{kind}_map_50"),
        f"test_star_galaxy_{kind}_map_50": test["star_galaxy_map"][f"{kind}_map_50"],
        "test_central_segmented": test["central"]["segmented"],
        "test_central_images": test["central"]["images"],
        "test_central_class_accuracy": test["central"]["class_accuracy"],
        "test_central_centroid_offset_median": test["central"]["centroid_offset_median"],
        "test_precision_at_80_recall": test["matched"]["precision_at_80_recall"],
        "test_precision_at_80_recall_by_snr": test.get("precision_at_80_recall_by_snr"),
        "scoring": "COCO mAP (torchmetrics/pycocotools, up to 1000 detections per image) over "
        "all instances; central = the bright galaxy of the Galaxy-Zoo-like cutouts"
        + ("" if config.architecture.masks else "; matched by box IoU"),
    }
    return {k: v for k, v in metrics.items() if v is not None}
