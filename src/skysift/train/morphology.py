"""Train the galaxy-type network (``skysift train morphology``).

Data: SDSS g, r, i images of 256 x 256 like the segmenter's Galaxy-Zoo-like cutouts (a bright
central galaxy 6-8 mag above the depth, neighbours at 10-40 sources/arcmin^2, PSF varying,
every artifact on), with the central type cycling elliptical, spiral, elliptical, spiral,
disk, clumpy. Every galaxy of an image with detection-band S/N >= ``min_snr`` gives one stamp
(:func:`skysift.morphology.galaxy_stamp`) cut around the bounding box of its true footprint,
with the square's size (x0.9-1.5 of the nominal) and centre (+-8 % of its side) jittered so
that the network sees the spread of boxes a detector draws. Labels follow the segmenter's
(:func:`skysift.train.segmenter_data.instance_targets`): a spiral smaller than the PSF, drawn
without arms, is ``other``.

Training: AdamW, cosine learning rate, the eight flips/rotations, class-balanced
cross-entropy; the weights of best validation accuracy on central galaxies are kept.
Everything is fixed by the config's seed; data come from training and validation seeds only.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skysift.models.morphology import GALAXY_CLASSES, MorphologyConfig
from skysift.models.segmenter import CLASSES as SOURCE_CLASSES
from skysift.morphology import STAMP_PADDING, galaxy_stamp
from skysift.sim.field import FieldConfig, SimulatedField
from skysift.sim.seeds import dataset_seeds, seed_span

__all__ = [
    "MorphologyStamps",
    "MorphologyTrainingConfig",
    "morphology_field_configs",
    "train_morphology",
]

log = logging.getLogger(__name__)

#: Field seeds start here within each role's range (clear of the other models' fields).
SEED_OFFSET = 500_000
#: Central galaxy types, cycled over the images.
CENTRAL_CYCLE = ("elliptical", "spiral", "elliptical", "spiral", "disk", "clumpy")
IMAGE_SIZE = 256
SOFTENING = 4.0
#: With stars, images come from the segmenter's seeds past its own datasets' (<= 4,000).
SOURCE_TYPE_OFFSET = 20_000


def morphology_field_configs(
    role: str, n: int, *, mix_seed: int = 0, with_stars: bool = False
) -> list[FieldConfig]:
    """``n`` images for ``role`` (``train``, ``validation`` or ``test``).

    With ``with_stars`` the images are the segmenter's kinds (SDSS cutouts with a central
    galaxy and DECaLS fields, :func:`skysift.train.segmenter_data.segmenter_field_configs`),
    from seeds past the segmenter's own datasets.
    """
    from skysift.train.segmenter_data import FOOTPRINT_NSIGMA, segmenter_field_configs

    if with_stars:
        return segmenter_field_configs(role, n, offset=SOURCE_TYPE_OFFSET, mix_seed=3)

    first = dataset_seeds(role, n, offset=SEED_OFFSET).start
    rng = np.random.default_rng([mix_seed, first])
    return [
        FieldConfig(
            survey="sdss",
            size=IMAGE_SIZE,
            seed=first + k,
            density=float(math.exp(rng.uniform(math.log(10.0), math.log(40.0)))),
            star_fraction=float(rng.uniform(0.3, 0.7)),
            psf_size_growth=float(rng.uniform(0.0, 0.2)),
            optical_centre=tuple(float(v) for v in rng.uniform(-512, 768, 2)),
            psf_reference_radius=1024.0,
            cosmic_rays=float(rng.uniform(10.0, 100.0)),
            footprint_nsigma=FOOTPRINT_NSIGMA,
            central_galaxy=CENTRAL_CYCLE[k % len(CENTRAL_CYCLE)],
        )
        for k in range(n)
    ]


def type_classes(*, with_stars: bool) -> tuple[str, ...]:
    """The type network's classes: galaxy types, or the segmenter's classes with stars."""
    return SOURCE_CLASSES if with_stars else GALAXY_CLASSES


def footprint_boxes(footprints: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``(n, 4)`` x1, y1, x2, y2 (pixel edges) of each id's footprint; NaN where it has none."""
    from scipy import ndimage

    boxes = np.full((len(ids), 4), np.nan)
    slices = ndimage.find_objects(footprints)
    for k, source in enumerate(ids):
        if 0 < source <= len(slices) and slices[source - 1] is not None:
            rows, cols = slices[source - 1]
            boxes[k] = (cols.start, rows.start, cols.stop, rows.stop)
    return boxes


@dataclass(frozen=True)
class MorphologyStamps:
    """Extractor for :func:`skysift.sim.dataset.write_dataset`: one stamp per source.

    Stores float16 stamps of the normalized image (as the segmenter sees it) and, per stamp,
    the class index into :attr:`classes` (with ``with_stars`` every star and galaxy above
    ``min_snr`` gives a stamp, labelled with the segmenter's classes), the truth S/N,
    half-light radius over the PSF FWHM, the box side and whether it is the image's central
    galaxy.
    """

    min_snr: float = 30.0
    stamp: int = 64
    with_stars: bool = False

    @property
    def classes(self) -> tuple[str, ...]:
        """The labels' classes: galaxy types, or the segmenter's classes with stars."""
        return type_classes(with_stars=self.with_stars)

    def __call__(self, field: SimulatedField) -> dict[str, np.ndarray]:
        from skysift.segment import network_input

        truth = field.truth
        ids = np.asarray(truth["id"], dtype=np.int64)
        morphology = np.asarray(truth["morphology"]).astype("U10")
        hlr = np.asarray(truth["hlr"].value, dtype=float)
        psf_fwhm = np.asarray(truth["psf_fwhm"].value, dtype=float)
        morphology = np.where((morphology == "spiral") & (hlr < psf_fwhm), "other", morphology)
        snr = np.asarray(truth["snr"], dtype=float)
        central = ids == 1 if field.config.central_galaxy is not None else np.zeros_like(ids, bool)
        boxes = footprint_boxes(np.asarray(field.footprints), ids)
        keep = (
            np.isin(morphology, self.classes)
            & np.isfinite(boxes[:, 0])
            & ((snr >= self.min_snr) | central)
        )
        data = network_input(field.image, channels=field.image.n_bands, softening=SOFTENING)
        rng = np.random.default_rng([field.config.seed, 7])
        stamps = []
        for box in boxes[keep]:
            stamps.append(
                galaxy_stamp(
                    data,
                    box,
                    size=self.stamp,
                    padding=STAMP_PADDING * float(rng.uniform(0.9 / 1.25, 1.5 / 1.25)),
                    shift=tuple(float(v) for v in rng.uniform(-0.08, 0.08, 2)),
                )
            )
        n = int(keep.sum())
        sides = np.maximum(boxes[keep, 2] - boxes[keep, 0], boxes[keep, 3] - boxes[keep, 1])
        return {
            "stamps": np.asarray(stamps, dtype=np.float16).reshape(n, -1, self.stamp, self.stamp),
            "label": np.array([self.classes.index(m) for m in morphology[keep]], dtype=np.int64),
            "snr": snr[keep],
            "size_ratio": hlr[keep] / psf_fwhm[keep],
            "side": sides,
            "central": central[keep],
            "seed": np.full(n, field.config.seed, dtype=np.int64),
        }


@dataclass(frozen=True)
class MorphologyTrainingConfig:
    """Everything that fixes a galaxy-type training run."""

    name: str = "morphology"
    train_dir: str = "data/morphology_train"
    val_dir: str = "data/morphology_val"
    run_dir: str = "runs/morphology"
    n_train_images: int = 3000
    n_val_images: int = 300
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    min_snr: float = 30.0
    with_stars: bool = False

    @property
    def classes(self) -> tuple[str, ...]:
        return type_classes(with_stars=self.with_stars)

    def extractor(self) -> MorphologyStamps:
        return MorphologyStamps(min_snr=self.min_snr, with_stars=self.with_stars)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def prepare_data(
    config: MorphologyTrainingConfig,
    *,
    roles: tuple[str, ...] = ("train", "validation"),
    workers: int = 1,
    progress: bool = True,
) -> None:
    """Simulate (resumably) the training and validation images and cut their stamps.

    With ``workers > 1`` the images are split into that many parts, each simulated by its own
    process into ``<dir>/part_<k>`` (each part is a resumable dataset of its own).
    """
    plan = {
        "train": (config.train_dir, config.n_train_images),
        "validation": (config.val_dir, config.n_val_images),
    }
    jobs = []
    for role in roles:
        directory, n = plan[role]
        configs = morphology_field_configs(role, n, with_stars=config.with_stars)
        if workers <= 1:
            jobs.append((directory, configs))
        else:
            jobs += [(f"{directory}/part_{k}", configs[k::workers]) for k in range(workers)]
    extract = config.extractor()
    if workers <= 1:
        for directory, configs in jobs:
            _write_part(directory, configs, extract, progress)
        return
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        futures = [
            pool.submit(_write_part, directory, configs, extract, progress and k % workers == 0)
            for k, (directory, configs) in enumerate(jobs)
        ]
        for future in futures:
            future.result()


def _write_part(directory: str, configs: list[FieldConfig], extract, progress: bool) -> None:
    from skysift.sim.dataset import write_dataset

    write_dataset(directory, configs, extract, progress=progress, description="galaxy-type stamps")


def load_stamps(directory: str) -> dict[str, np.ndarray]:
    """Every shard of a stamp dataset (and of its ``part_*`` sub-datasets), concatenated."""
    from skysift.sim.dataset import iter_shards

    root = Path(directory)
    parts: dict[str, list[np.ndarray]] = {}
    folders = sorted(root.glob("part_*")) or [root]
    for folder in folders:
        for shard in iter_shards(folder):
            for key, value in shard.items():
                parts.setdefault(key, []).append(value)
    if not parts:
        raise FileNotFoundError(f"{directory}: no stamps")
    return {key: np.concatenate(value) for key, value in parts.items()}


def _dihedral(rng: np.random.Generator, stamps: np.ndarray) -> np.ndarray:
    """Each stamp flipped and rotated by one of the eight symmetries of the square."""
    out = np.empty_like(stamps)
    for k, stamp in enumerate(stamps):
        turned = np.rot90(stamp, int(rng.integers(4)), axes=(1, 2))
        out[k] = turned[:, :, ::-1] if rng.random() < 0.5 else turned
    return out


def predict_probabilities(module, stamps: np.ndarray, *, batch: int = 512) -> np.ndarray:
    """Softmax class probabilities of a torch module on ``(n, bands, s, s)`` stamps."""
    import torch

    module.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(stamps), batch):
            logits = module(torch.from_numpy(np.asarray(stamps[i : i + batch], np.float32)))
            out.append(torch.softmax(logits, dim=1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(module.config.classes)), np.float32)


def type_metrics(
    probabilities: np.ndarray,
    data: dict[str, np.ndarray],
    *,
    classes: tuple[str, ...] = GALAXY_CLASSES,
) -> dict[str, Any]:
    """Accuracy overall, on central galaxies, and spiral/elliptical accuracy of the centrals.

    With a ``star`` class, also the star/galaxy separation (P(galaxy) = 1 - P(star)) of the
    stamps with truth S/N >= 20: ROC-AUC and the precision of galaxies and of stars at 80 %
    recall (Burke et al.'s figure, per stamp).
    """
    predicted = probabilities.argmax(axis=1)
    labels = data["label"]
    central = data["central"].astype(bool)
    named = [classes.index("elliptical"), classes.index("spiral")]
    spiral_elliptical = central & np.isin(labels, named)
    confusion = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    extra = {}
    if "star" in classes:
        extra = star_galaxy_separation(
            1.0 - probabilities[:, classes.index("star")],
            labels != classes.index("star"),
            data["snr"] >= 20.0,
        )
    return {
        **extra,
        "n": int(labels.size),
        "accuracy": float(np.mean(predicted == labels)) if labels.size else math.nan,
        "central_accuracy": float(np.mean(predicted[central] == labels[central]))
        if central.any()
        else math.nan,
        "central_spiral_elliptical_accuracy": float(
            np.mean(predicted[spiral_elliptical] == labels[spiral_elliptical])
        )
        if spiral_elliptical.any()
        else math.nan,
        "confusion": confusion.tolist(),
    }


def star_galaxy_separation(
    galaxy_score: np.ndarray, is_galaxy: np.ndarray, selected: np.ndarray
) -> dict[str, float]:
    """ROC-AUC and precision at 80 % recall of galaxies and of stars among ``selected``."""
    from sklearn.metrics import roc_auc_score

    from skysift.evaluate.classification import precision_at_recall

    score, truth = galaxy_score[selected], is_galaxy[selected].astype(bool)
    if truth.all() or not truth.any():
        return {}
    return {
        "star_galaxy_auc_snr20": float(roc_auc_score(truth, score)),
        "galaxy_precision_at_80_recall_snr20": precision_at_recall(truth, score, 0.8),
        "star_precision_at_80_recall_snr20": precision_at_recall(~truth, -score, 0.8),
    }


def train_morphology(config: MorphologyTrainingConfig, *, progress: bool = True) -> Path:
    """Train from the prepared stamps; returns the run directory (``best.safetensors``).

    Resumes from ``run_dir/last.pt`` after an interruption (checkpointed every epoch).
    """
    import torch
    from torch import nn

    from skysift.models.morphology import MorphologyNet
    from skysift.progress import progress_iter
    from skysift.train.checkpoints import (
        append_log,
        random_state,
        restore_random_state,
        save_weights,
    )

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    run = Path(config.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    train = load_stamps(config.train_dir)
    val = load_stamps(config.val_dir)
    model = MorphologyNet(
        MorphologyConfig(in_channels=int(train["stamps"].shape[1]), classes=config.classes)
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = max(1, len(train["label"]) // config.batch_size)
    total = steps_per_epoch * config.epochs
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=total, pct_start=0.1
    )
    counts = np.bincount(train["label"], minlength=len(config.classes)).astype(float)
    weights = torch.tensor(
        counts.sum() / (len(counts) * np.maximum(counts, 1)), dtype=torch.float32
    )
    loss_fn = nn.CrossEntropyLoss(weight=weights)
    start_epoch, best = 0, -1.0
    rng = np.random.default_rng([config.seed, 0])
    checkpoint = run / "last.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best = state["epoch"], state["best"]
        if "rng" in state:
            restore_random_state(rng, state)
        else:  # written before the random streams were checkpointed
            log.warning("old checkpoint: the resumed run will differ from an uninterrupted one")
            rng = np.random.default_rng([config.seed, start_epoch])
        log.info("resuming at epoch %d", start_epoch)
    for epoch in range(start_epoch, config.epochs):
        began = time.time()
        model.train()
        order = rng.permutation(len(train["label"]))
        losses = []
        batches = [
            order[i * config.batch_size : (i + 1) * config.batch_size]
            for i in range(steps_per_epoch)
        ]
        for index in progress_iter(batches, f"epoch {epoch + 1}", enabled=progress):
            stamps = _dihedral(rng, train["stamps"][index].astype(np.float32))
            logits = model(torch.from_numpy(stamps))
            loss = loss_fn(logits, torch.from_numpy(train["label"][index]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        metrics = type_metrics(
            predict_probabilities(model, val["stamps"]), val, classes=config.classes
        )
        entry = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)),
            "seconds": round(time.time() - began, 1),
            **{k: v for k, v in metrics.items() if k != "confusion"},
        }
        append_log(run / "train.log", entry)
        log.info("%s", json.dumps(entry))
        # with stars the star/galaxy separation counts as much as the centrals' types
        score = metrics["central_accuracy"] + (
            metrics.get("star_galaxy_auc_snr20", 0.0)
            if config.with_stars
            else 1e-3 * metrics["accuracy"]
        )
        if score > best:
            best = score
            save_weights(model, run / "best.safetensors")
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                **random_state(rng),
                "epoch": epoch + 1,
                "best": best,
            },
            checkpoint,
        )
    return run


def _command(config: MorphologyTrainingConfig) -> str:
    stars = " --with-stars" if config.with_stars else ""
    return f"skysift train morphology --seed {config.seed}{stars}"


def card_for(config: MorphologyTrainingConfig, architecture: MorphologyConfig) -> dict[str, Any]:
    """Model card skeleton of a galaxy-type network trained with ``config``."""
    from skysift.train.segmenter_data import FOOTPRINT_NSIGMA

    if config.with_stars:
        task = (
            "source type (star, elliptical, spiral, other) of a segmented instance, from a "
            "stamp resampled around its box; the segmenter's second look at every instance"
        )
        trained_on = {
            "images": f"{config.n_train_images} 256x256 images of the segmenter's kinds: SDSS "
            "g,r,i cutouts with a bright central elliptical or spiral (neighbours at "
            "10-40/arcmin^2) and DECaLS g,r,z fields at 40-150/arcmin^2; varying PSF, all "
            "artifacts",
            "stamps": f"every star and galaxy with S/N >= {config.min_snr:g} and the central "
            f"galaxy, cut around its {FOOTPRINT_NSIGMA:g}-sigma footprint's box, size "
            "x0.9-1.5 and centre +-8 % jittered; spirals smaller than the PSF labelled other",
        }
    else:
        task = (
            "galaxy type (elliptical, spiral, other) of a segmented galaxy, from a stamp "
            "resampled around its box; the segmenter's second look at its galaxy instances"
        )
        trained_on = {
            "images": f"{config.n_train_images} SDSS g,r,i 256x256 images with a bright central "
            f"galaxy (cycling {', '.join(CENTRAL_CYCLE)}), neighbours at 10-40/arcmin^2, "
            "varying PSF, all artifacts",
            "stamps": f"every galaxy with S/N >= {config.min_snr:g} and the central one, cut "
            f"around its {FOOTPRINT_NSIGMA:g}-sigma footprint's box, size x0.9-1.5 and centre "
            "+-8 % jittered; spirals smaller than the PSF labelled other",
        }
    return {
        "name": config.name,
        "task": task,
        "architecture": {"kind": "morphology", "config": architecture.to_dict()},
        "normalization": {
            "kind": "asinh_mad",
            "softening": SOFTENING,
            "formula": "the segmenter's input (per band asinh((x - median) / (softening * "
            "1.4826 * MAD)), whole-image statistics), resampled to a stamp of the square of "
            f"{STAMP_PADDING:g} x the box's longer side (at least 16 px) around the box centre, "
            "Gaussian anti-aliasing when shrinking",
        },
        "classes": list(architecture.classes),
        "trained_on": trained_on,
        "training": {
            "command": _command(config),
            "seed": config.seed,
            "config": config.to_dict(),
        },
    }


def finish_morphology(
    config: MorphologyTrainingConfig,
    best_weights: Path,
    *,
    out_dir: Path | None = None,
    test_dir: str = "data/morphology_test",
    n_test: int = 300,
    segmenter_test_dir: str | None = "data/segmenter_test",
    progress: bool = True,
) -> Path:
    """Measure held-out stamps (and the segmenter's test images) and write weights + card.

    fp16 weights ship when they change the validation accuracy by less than 0.005. When
    ``segmenter_test_dir`` holds the segmenter's test images, the shipped segmenter is scored
    on them with and without this network's types.
    """
    import torch
    from safetensors.torch import load_file

    from skysift.models.morphology import MorphologyNet
    from skysift.models.registry import save_model, weights_dir
    from skysift.sim.dataset import write_dataset

    val = load_stamps(config.val_dir)
    architecture = MorphologyConfig(in_channels=int(val["stamps"].shape[1]), classes=config.classes)
    model = MorphologyNet(architecture)
    model.load_state_dict(load_file(str(best_weights)))
    model.eval()
    full = type_metrics(predict_probabilities(model, val["stamps"]), val, classes=config.classes)
    half = MorphologyNet(architecture)
    half.load_state_dict({k: v.half().to(v.dtype) for k, v in model.state_dict().items()})
    half.eval()
    fp16 = (
        abs(
            type_metrics(predict_probabilities(half, val["stamps"]), val, classes=config.classes)[
                "accuracy"
            ]
            - full["accuracy"]
        )
        < 0.005
    )
    shipped = half if fp16 else model
    write_dataset(
        test_dir,
        morphology_field_configs("test", n_test, with_stars=config.with_stars),
        config.extractor(),
        progress=progress,
        description="galaxy-type stamps (test, held out)",
    )
    test = load_stamps(test_dir)
    stamp_metrics = type_metrics(
        predict_probabilities(shipped, test["stamps"]), test, classes=config.classes
    )
    card = card_for(config, architecture)
    card["data_seeds"] = {
        role: seed_span(morphology_field_configs(role, n, with_stars=config.with_stars))
        for role, n in (
            ("train", config.n_train_images),
            ("validation", config.n_val_images),
            ("test", n_test),
        )
    }
    card["parameters"] = int(sum(p.numel() for p in model.parameters()))
    card["metrics"] = {
        "validation_accuracy": full["accuracy"],
        "validation_central_accuracy": full["central_accuracy"],
        "test_images": n_test,
        "test_stamps": stamp_metrics["n"],
        "test_accuracy": stamp_metrics["accuracy"],
        "test_central_accuracy": stamp_metrics["central_accuracy"],
        "test_central_spiral_elliptical_accuracy": stamp_metrics[
            "central_spiral_elliptical_accuracy"
        ],
        "test_confusion": stamp_metrics["confusion"],
        **{
            f"test_{key}": value
            for key, value in stamp_metrics.items()
            if key.startswith(("star_", "galaxy_"))
        },
    }
    results = {"stamps": stamp_metrics}
    if segmenter_test_dir and Path(segmenter_test_dir, "manifest.json").exists():
        results["segmenter"] = segmenter_with_types(shipped, card, segmenter_test_dir)
        card["metrics"].update(
            {
                f"segmenter_test_{key}": value
                for key, value in results["segmenter"]["with_types"].items()
            }
        )
    Path(config.run_dir).mkdir(parents=True, exist_ok=True)
    Path(config.run_dir, "test_metrics.json").write_text(
        json.dumps(results, indent=1, default=str) + "\n"
    )
    with torch.no_grad():
        return save_model(shipped, card, out_dir or weights_dir(), fp16=fp16)


def segmenter_with_types(module, card: dict[str, Any], test_dir: str) -> dict[str, Any]:
    """The shipped segmenter on its test images, typed by its own class head and by ``module``.

    Returns, for each (``own_types``, ``with_types``): the central galaxies' spiral/elliptical
    accuracy and count, their mask mAP@0.5, and the all-instance mask mAP@0.5.
    """
    from skysift.models.registry import load_model
    from skysift.morphology import GalaxyTyper
    from skysift.train.segmenter import evaluate_segmenter, load_images, raw_images

    segmenter, _ = load_model("segmenter")
    samples = load_images(test_dir)
    raws = raw_images(test_dir)
    typer = GalaxyTyper(module=module, card=card, backend="torch")
    out = {}
    for label, chosen in (("own_types", None), ("with_types", typer)):
        metrics = evaluate_segmenter(segmenter, samples, raw_images=raws, galaxy_typer=chosen)
        out[label] = {
            "central_segmented": metrics["central"]["segmented"],
            "central_images": metrics["central"]["images"],
            "central_class_accuracy": metrics["central"]["class_accuracy"],
            "central_mask_map_50": metrics["central_map"].get("mask_map_50"),
            "mask_map_50": metrics.get("mask_map_50"),
            "mask_map_50_per_class": metrics.get("mask_map_50_per_class"),
        }
    return out
