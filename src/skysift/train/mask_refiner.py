"""Train the segmenter's mask refiner (:mod:`skysift.mask_refine`).

Data: Burke et al.'s typical fields (:func:`skysift.train.segmenter_data.typical_field_configs`)
from a seed range of their own (:data:`SEED_OFFSET`, clear of every segmenter's and second
look's fields): training and validation fields. The named segmenter runs on them; every
detection it scores at :data:`skysift.mask_refine.MIN_SCORE` or more, with a box of at most
:data:`skysift.mask_refine.MAX_BOX` px, whose mask (probability >= 0.5) overlaps a truth
source with IoU >= :data:`MIN_IOU` becomes a stamp, its target the truth mask of the source it
overlaps most.

Training: binary cross-entropy plus a per-stamp soft Dice, AdamW with a one-cycle learning
rate; each batch turned and flipped by a random symmetry of the square and, with
``noise_max``, the bands of a ``noise_fraction`` of the stamps given Gaussian noise of a
standard deviation drawn from [0, ``noise_max``] (normalized units, as the segmenter's
training); with ``noise_channel`` the network also sees each stamp's measured background noise
(:func:`skysift.mask_refine.with_noise_channel`, measured after the noise is added), so that
it can tell an image noisier than its normalization from one at its depth. With
``mask_jitter`` each training stamp's instance channel (the detector's mask) is eroded or
dilated by a random whole number of pixels up to ``mask_jitter`` (:func:`jittered_masks`), so that
the network takes from it which source is meant but not how large it is (session 39 found
the shipped refiner copies that size). The epoch with the lowest validation loss (clean
stamps, instance channel as the detector drew it) is kept. Run: ``skysift train mask-refiner
--seed 0``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "MaskRefinerTrainingConfig",
    "finish_mask_refiner",
    "jittered_masks",
    "prepare_data",
    "refiner_stamps",
    "stamp_metrics",
    "train_mask_refiner",
]

log = logging.getLogger(__name__)

#: The refiner's fields start this far into each role's seeds (clear of the 2,400 typical
#: fields the segmenters were trained on, and of the other models' offsets).
SEED_OFFSET = 470_000
#: A detection whose mask overlaps no truth source this well is not a stamp.
MIN_IOU = 0.1
#: Truth S/N bins of the stamp metrics.
SNR_BINS = ((5.0, 20.0), (20.0, 50.0), (50.0, math.inf))
#: Images run through the segmenter at a time.
CHUNK = 32
#: Stamps noisier than this percentile of the training stamps' noise keep the detector's mask
#: (:func:`noise_limit`).
NOISE_LIMIT_PERCENTILE = 99.0
#: The arrays of a stamp set.
STAMP_ARRAYS = ("stamps", "targets", "snr", "truth_class", "detector_iou", "seed")


@dataclass(frozen=True)
class MaskRefinerTrainingConfig:
    """Everything that fixes a mask-refiner training run."""

    name: str = "mask_refiner"
    segmenter: str = "segmenter_psf_typical"
    train_dir: str = "data/mask_refiner_train"
    val_dir: str = "data/mask_refiner_validation"
    test_dir: str = "data/mask_refiner_test"
    run_dir: str = "runs/mask_refiner"
    n_train_fields: int = 1200
    n_val_fields: int = 128
    n_test_fields: int = 128
    widths: tuple[int, ...] = (8, 16, 32, 64)
    epochs: int = 10
    #: largest standard deviation of the noise added to a stamp's bands (0: none)
    noise_max: float = 0.0
    #: the fraction of the training stamps given noise (with ``noise_max``)
    noise_fraction: float = 1.0
    #: the network sees each stamp's measured noise as one more channel
    noise_channel: bool = False
    #: largest erosion or dilation (px) of a training stamp's instance channel (0: none)
    mask_jitter: int = 0
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    workers: int = 2

    def __post_init__(self) -> None:
        from skysift.errors import InvalidParameterError

        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        for key in ("n_train_fields", "n_val_fields", "n_test_fields", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise InvalidParameterError(f"{key} must be >= 1; got {getattr(self, key)}")
        if not self.noise_max >= 0:
            raise InvalidParameterError(f"noise_max must be >= 0; got {self.noise_max}")
        if self.mask_jitter < 0:
            raise InvalidParameterError(f"mask_jitter must be >= 0; got {self.mask_jitter}")
        if not 0 < self.noise_fraction <= 1:
            raise InvalidParameterError(
                f"noise_fraction must be in (0, 1]; got {self.noise_fraction}"
            )
        if not self.learning_rate > 0 or self.weight_decay < 0:
            raise InvalidParameterError("learning_rate must be > 0 and weight_decay >= 0")
        if self.threads < 1 or self.workers < 1:
            raise InvalidParameterError("threads and workers must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"widths": list(self.widths)}


def field_configs(role: str, n: int):
    """The refiner's ``n`` typical fields of ``role``."""
    from skysift.train.segmenter_data import typical_field_configs

    return typical_field_configs(role, n, seed_offset=SEED_OFFSET)


def prepare_data(config: MaskRefinerTrainingConfig, *, progress: bool = True) -> None:
    """Simulate (or finish simulating) the training, validation and test fields."""
    from skysift.sim.dataset import write_role_datasets
    from skysift.train.segmenter_data import SegmenterSamples

    write_role_datasets(
        (
            (config.train_dir, "train", config.n_train_fields),
            (config.val_dir, "validation", config.n_val_fields),
            (config.test_dir, "test", config.n_test_fields),
        ),
        field_configs,
        SegmenterSamples(),
        description="mask refiner: typical fields, {role}",
        workers=config.workers,
        progress=progress,
        extra_fields=True,  # another run's field counts; only the named ones are read
    )


def _matched_truth(mask: np.ndarray, labels: np.ndarray) -> tuple[int, float]:
    """The truth id the boolean ``mask`` overlaps most and their IoU (0, 0.0 for none)."""
    hit = labels[mask]
    hit = hit[hit > 0]
    if not hit.size:
        return 0, 0.0
    ids, counts = np.unique(hit, return_counts=True)
    best = int(np.argmax(counts))
    truth_area = int(np.count_nonzero(labels == ids[best]))
    overlap = int(counts[best])
    return int(ids[best]), overlap / (int(mask.sum()) + truth_area - overlap)


def refiner_stamps(
    module, samples: list[dict[str, Any]], *, progress: bool = False
) -> dict[str, np.ndarray]:
    """The training stamps of ``samples`` (:func:`skysift.train.segmenter.load_images`) for
    the segmenter ``module``: see the module notes. Stamps are float16, targets uint8."""
    from skysift.mask_refine import MIN_SCORE, STAMP, crop_stamp, refinable, refiner_inputs
    from skysift.progress import progress_iter
    from skysift.train.segmenter import network_images, predict

    parts: dict[str, list] = {key: [] for key in STAMP_ARRAYS}
    starts = range(0, len(samples), CHUNK)
    for start in progress_iter(starts, "cutting refiner stamps", enabled=progress):
        chunk = samples[start : start + CHUNK]
        for prediction, sample in zip(
            predict(module, network_images(module, chunk)), chunk, strict=True
        ):
            keep = np.asarray(prediction["scores"]) >= MIN_SCORE
            boxes, masks = prediction["boxes"][keep], prediction["masks"][keep]
            if not len(boxes):
                continue
            stamps, origins = refiner_inputs(
                sample["image"], masks, boxes, psf_fwhm=sample["psf_fwhm"]
            )
            labels = sample["labels"]
            snr = dict(zip(sample["ids"].tolist(), sample["snr"].tolist(), strict=True))
            classes = dict(zip(sample["ids"].tolist(), sample["classes"].tolist(), strict=True))
            for k in np.flatnonzero(refinable(boxes)):
                truth_id, iou = _matched_truth(masks[k, 0] >= 0.5, labels)
                if iou < MIN_IOU:
                    continue
                row, col = origins[k]
                target = crop_stamp((labels == truth_id).astype(np.float32), row, col)
                parts["stamps"].append(stamps[k].astype(np.float16))
                parts["targets"].append(target.astype(np.uint8))
                parts["snr"].append(snr.get(truth_id, math.nan))
                parts["truth_class"].append(classes.get(truth_id, -1))
                parts["detector_iou"].append(iou)
                parts["seed"].append(sample["seed"])
    if not parts["stamps"]:
        return {
            "stamps": np.zeros((0, 6, STAMP, STAMP), np.float16),
            "targets": np.zeros((0, STAMP, STAMP), np.uint8),
        } | {key: np.zeros(0) for key in STAMP_ARRAYS[2:]}
    return {key: np.asarray(value) for key, value in parts.items()}


def stamp_cache(config: MaskRefinerTrainingConfig, role: str) -> tuple[Path, dict[str, Any]]:
    """Where :func:`cached_stamps` keeps ``role``'s stamps, and the settings that cut them:
    the segmenter and the fields."""
    seeds = [c.seed for c in field_configs(role, _role_fields(config, role))]
    settings = {"segmenter": config.segmenter, "role": role, "fields": len(seeds)}
    settings["first_seed"] = seeds[0]
    return Path(config.run_dir) / f"stamps_{role}.npz", settings


def write_stamp_cache(
    config: MaskRefinerTrainingConfig, role: str, stamps: dict[str, np.ndarray]
) -> Path:
    """Keep ``role``'s stamps (:func:`refiner_stamps`' arrays) where :func:`cached_stamps`
    finds them, with the settings that cut them."""
    from skysift.train.checkpoints import write_cache

    return write_cache(*stamp_cache(config, role), stamps)


def cached_stamps(
    config: MaskRefinerTrainingConfig, role: str, *, progress: bool = False
) -> dict[str, np.ndarray]:
    """The stamps of the ``role`` ("train", "validation" or "test") fields, cut once and
    cached in the run directory (:func:`stamp_cache`). Only the fields the config names are
    read; stamps cut with other settings in the same run folder are refused by name."""
    from skysift.models.registry import load_model, model_location
    from skysift.train.checkpoints import read_cache
    from skysift.train.segmenter import named_images

    cached = read_cache(*stamp_cache(config, role))
    if cached is not None:
        return cached
    name, folder = model_location(config.segmenter)
    module, _ = load_model(name, directory=folder)
    directory = {"train": config.train_dir, "validation": config.val_dir}.get(role, config.test_dir)
    fields = field_configs(role, _role_fields(config, role))
    stamps = refiner_stamps(module, named_images(directory, fields), progress=progress)
    write_stamp_cache(config, role, stamps)
    return stamps


def _role_fields(config: MaskRefinerTrainingConfig, role: str) -> int:
    return {
        "train": config.n_train_fields,
        "validation": config.n_val_fields,
        "test": config.n_test_fields,
    }[role]


def _loss(logits, targets):
    """Binary cross-entropy plus the mean per-stamp soft Dice loss."""
    import torch
    from torch.nn import functional

    bce = functional.binary_cross_entropy_with_logits(logits, targets)
    probability = torch.sigmoid(logits)
    overlap = (probability * targets).sum((1, 2, 3))
    total = probability.sum((1, 2, 3)) + targets.sum((1, 2, 3))
    return bce + (1.0 - (2.0 * overlap + 1.0) / (total + 1.0)).mean()


def _turned(rng: np.random.Generator, *tensors):
    """``tensors`` turned and flipped by one random symmetry of the square (all alike)."""
    import torch

    k, flip = int(rng.integers(4)), bool(rng.integers(2))
    out = [torch.rot90(t, k, dims=(2, 3)) if k else t for t in tensors]
    return [torch.flip(t, dims=(3,)) for t in out] if flip else out


def _noisier(
    rng: np.random.Generator, stamps, *, bands: int, noise_max: float, fraction: float = 1.0
):
    """``stamps`` (a torch batch) with Gaussian noise added to the first ``bands`` channels,
    of a standard deviation drawn for each stamp from [0, ``noise_max``]; with ``fraction``
    < 1, each stamp is left as it is with probability 1 - ``fraction``."""
    import torch

    sigma = rng.uniform(0.0, noise_max, len(stamps)).astype(np.float32)
    if fraction < 1:
        sigma[rng.random(len(stamps)) >= fraction] = 0.0
    sigma = torch.from_numpy(sigma)
    noise = rng.standard_normal((len(stamps), bands, *stamps.shape[2:])).astype(np.float32)
    out = stamps.clone()
    out[:, :bands] += sigma[:, None, None, None] * torch.from_numpy(noise)
    return out


def jittered_masks(rng: np.random.Generator, stamps, *, channel: int, jitter: int):
    """``stamps`` (a torch batch) with channel ``channel`` grey-eroded (negative) or dilated
    (positive) by a 3x3 window ``k`` times, ``k`` drawn for each stamp from
    ``-jitter..jitter``."""
    import torch
    from torch.nn.functional import max_pool2d

    steps = rng.integers(-jitter, jitter + 1, len(stamps))
    out = stamps.clone()
    for k in np.unique(steps[steps != 0]):
        chosen = torch.from_numpy(np.flatnonzero(steps == k))
        plane = out[chosen, channel : channel + 1]
        sign = 1.0 if k > 0 else -1.0
        for _ in range(abs(int(k))):
            plane = sign * max_pool2d(sign * plane, 3, stride=1, padding=1)
        out[chosen, channel : channel + 1] = plane
    return out


def network_stamps(stamps: np.ndarray, *, noise_channel: bool) -> np.ndarray:
    """What the network sees of a float16/32 batch of :func:`refiner_stamps` stamps: float32,
    with the noise channel (:func:`skysift.mask_refine.with_noise_channel`) if it has one."""
    from skysift.mask_refine import with_noise_channel

    x = np.asarray(stamps, np.float32)
    return with_noise_channel(x, bands=x.shape[1] - 3) if noise_channel else x


def predicted_masks(
    module, stamps: np.ndarray, *, noise_channel: bool = False, batch: int = 256
) -> np.ndarray:
    """``module``'s mask probabilities of float16/32 stamps (eval mode, no gradients)."""
    import torch

    module.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(stamps), batch):
            x = network_stamps(stamps[start : start + batch], noise_channel=noise_channel)
            out.append(torch.sigmoid(module(torch.from_numpy(x)))[:, 0].numpy())
    return np.concatenate(out) if out else np.zeros((0, *stamps.shape[2:]), np.float32)


def _validation_loss(
    module, data: dict[str, np.ndarray], *, noise_channel: bool, batch: int = 256
) -> float:
    import torch

    module.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(data["targets"]), batch):
            x = network_stamps(data["stamps"][start : start + batch], noise_channel=noise_channel)
            x = torch.from_numpy(x)
            y = torch.from_numpy(data["targets"][start : start + batch].astype(np.float32))
            total += float(_loss(module(x), y[:, None])) * len(x)
    return total / max(len(data["targets"]), 1)


def train_mask_refiner(config: MaskRefinerTrainingConfig, *, progress: bool = True) -> Path:
    """Train the refiner; returns the run directory (``best.safetensors``, ``log.jsonl``,
    ``summary.json``)."""
    import torch

    from skysift.io import atomic_write
    from skysift.models.unet import UNet, UNetConfig
    from skysift.progress import progress_iter
    from skysift.train.checkpoints import append_log, save_weights

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    run = Path(config.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    train = cached_stamps(config, "train", progress=progress)
    val = cached_stamps(config, "validation", progress=progress)
    if not len(train["targets"]) or not len(val["targets"]):
        from skysift.errors import SkysiftError

        raise SkysiftError("the segmenter left no training or validation stamps")
    channels = train["stamps"].shape[1] + int(config.noise_channel)
    architecture = UNetConfig(in_channels=channels, widths=config.widths)
    module = UNet(architecture)
    optimizer = torch.optim.AdamW(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = len(train["targets"]) // config.batch_size
    if steps_per_epoch < 1:
        from skysift.errors import InvalidParameterError

        raise InvalidParameterError(
            f"{len(train['targets'])} training stamps do not fill a batch of {config.batch_size}"
        )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=config.learning_rate,
        total_steps=config.epochs * steps_per_epoch,
        pct_start=0.1,
    )
    stamps = torch.from_numpy(train["stamps"])
    targets = torch.from_numpy(train["targets"])
    bands = stamps.shape[1] - 3  # then the instance's mask, its neighbours' and the PSF
    best = math.inf
    log_path = run / "log.jsonl"
    log_path.write_text("")
    for epoch in progress_iter(range(config.epochs), "training mask refiner", enabled=progress):
        start = time.perf_counter()
        module.train()
        order = torch.from_numpy(rng.permutation(len(targets)))
        total = 0.0
        for step in range(steps_per_epoch):
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            x, y = _turned(rng, stamps[index].float(), targets[index].float()[:, None])
            if config.noise_max > 0:
                x = _noisier(
                    rng, x, bands=bands, noise_max=config.noise_max, fraction=config.noise_fraction
                )
            if config.mask_jitter:  # the instance's mask follows the bands
                x = jittered_masks(rng, x, channel=bands, jitter=config.mask_jitter)
            if config.noise_channel:
                x = torch.from_numpy(network_stamps(x.numpy(), noise_channel=True))
            loss = _loss(module(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
        val_loss = _validation_loss(module, val, noise_channel=config.noise_channel)
        entry = {
            "epoch": epoch + 1,
            "train_loss": total / steps_per_epoch,
            "val_loss": val_loss,
            "seconds": time.perf_counter() - start,
        }
        append_log(log_path, entry)
        if val_loss < best:
            best = val_loss
            with atomic_write(run / "best.safetensors") as tmp:
                save_weights(module, tmp)
    summary = {
        "best_val_loss": best,
        "architecture": architecture.to_dict(),
        "config": config.to_dict(),
        "n_train_stamps": len(targets),
        "n_val_stamps": len(val["targets"]),
    }
    with atomic_write(run / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return run


def noise_limit(config: MaskRefinerTrainingConfig) -> float | None:
    """The noisiest stamp a refiner trained by ``config`` takes: the
    :data:`NOISE_LIMIT_PERCENTILE` th percentile of its training stamps' noise
    (:func:`skysift.mask_refine.stamp_noise`, 4 decimals), or None when it was trained with
    added noise."""
    from skysift.mask_refine import stamp_noise

    if config.noise_max > 0:
        return None
    stamps = cached_stamps(config, "train")["stamps"]
    bands = stamps.shape[1] - 3
    noise = np.concatenate(
        [stamp_noise(stamps[i : i + 2048], bands=bands) for i in range(0, len(stamps), 2048)]
    )
    return round(float(np.percentile(noise, NOISE_LIMIT_PERCENTILE)), 4)


def refined_stamp_masks(
    module, stamps: np.ndarray, *, noise_channel: bool = False, max_noise: float | None = None
) -> np.ndarray:
    """The masks a refiner gives ``stamps`` in the segmenter: ``module``'s probabilities
    (:func:`predicted_masks`), and the detector's mask (the stamp's channel ``bands``) where
    the stamp is noisier than ``max_noise``."""
    from skysift.mask_refine import stamp_noise

    drawn = predicted_masks(module, stamps, noise_channel=noise_channel)
    if max_noise is None or not len(stamps):
        return drawn
    stamps = np.asarray(stamps)
    bands = stamps.shape[1] - 3
    declined = stamp_noise(stamps, bands=bands) > max_noise
    return np.where(declined[:, None, None], stamps[:, bands].astype(np.float32), drawn)


def with_sky_noise(data: dict[str, np.ndarray], *, seed: int = 0) -> np.ndarray:
    """The stamps of ``data`` with Gaussian noise of one sky sigma of their normalization
    (:data:`skysift.mask_refine.NOISE_SCALE`) added to their bands (a fixed ``seed``)."""
    from skysift.mask_refine import NOISE_SCALE

    stamps = np.asarray(data["stamps"], np.float32).copy()
    bands = stamps.shape[1] - 3
    rng = np.random.default_rng(seed)
    stamps[:, :bands] += rng.normal(0.0, NOISE_SCALE, stamps[:, :bands].shape).astype(np.float32)
    return stamps


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-stamp IoU of two boolean ``(n, H, W)`` stacks."""
    overlap = (a & b).sum(axis=(1, 2))
    union = (a | b).sum(axis=(1, 2))
    return overlap / np.maximum(union, 1)


def stamp_metrics(probabilities: np.ndarray, data: dict[str, np.ndarray]) -> list[dict]:
    """Per truth S/N bin, for galaxies and for stars: stamps, the median IoU with the truth
    mask of the detector's masks and of the refined ones (probability >= 0.5), and the
    fraction of each below IoU 0.5 (what Burke et al.'s figure counts as both a false
    detection and a miss)."""
    truth = data["targets"].astype(bool)
    bands = data["stamps"].shape[1] - 3
    detector = _iou(data["stamps"][:, bands].astype(np.float32) >= 0.5, truth)
    refined = _iou(np.asarray(probabilities) >= 0.5, truth)
    rows = []
    for group, chosen in (("galaxy", data["truth_class"] != 1), ("star", data["truth_class"] == 1)):
        for low, high in SNR_BINS:
            inside = chosen & (data["snr"] >= low) & (data["snr"] < high)
            n = int(inside.sum())
            row: dict[str, Any] = {
                "group": group,
                "snr_min": low,
                "snr_max": high if math.isfinite(high) else None,
                "n": n,
            }
            for name, iou in (("detector", detector), ("refined", refined)):
                row[f"{name}_median_iou"] = float(np.median(iou[inside])) if n else None
                row[f"{name}_below_half"] = float(np.mean(iou[inside] < 0.5)) if n else None
            rows.append(row)
    return rows


def finish_mask_refiner(
    config: MaskRefinerTrainingConfig,
    best_weights: Path,
    *,
    out_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Measure the best weights on the validation and held-out test stamps and write
    weights + card (fp16 when the masks hold)."""
    import torch
    from safetensors.torch import load_file

    from skysift.models.registry import save_model, weights_dir
    from skysift.models.unet import UNet, UNetConfig

    summary = json.loads(Path(config.run_dir, "summary.json").read_text())
    arch = summary["architecture"]
    architecture = UNetConfig(**(arch | {"widths": tuple(arch["widths"])}))
    model = UNet(architecture)
    model.load_state_dict(load_file(str(best_weights)))
    half = UNet(architecture)
    half.load_state_dict({k: v.half().to(v.dtype) for k, v in model.state_dict().items()})
    max_noise = noise_limit(config)
    val = cached_stamps(config, "validation")
    drawn = {"noise_channel": config.noise_channel, "max_noise": max_noise}
    full_masks = refined_stamp_masks(model, val["stamps"], **drawn)
    half_masks = refined_stamp_masks(half, val["stamps"], **drawn)
    changed = np.mean((full_masks >= 0.5) != (half_masks >= 0.5))
    fp16 = bool(changed < 1e-4)
    shipped = half if fp16 else model
    test = cached_stamps(config, "test", progress=progress)
    metrics = {
        "validation_stamps": stamp_metrics(half_masks if fp16 else full_masks, val),
        "test_stamps": stamp_metrics(refined_stamp_masks(shipped, test["stamps"], **drawn), test),
        # the stamp-level view of the Mask Galaxy paper's noise test: the sky noise added
        "test_stamps_sky_noise_added": stamp_metrics(
            refined_stamp_masks(shipped, with_sky_noise(test), **drawn), test
        ),
        "fp16_pixels_changed": float(changed),
    }
    card = card_for(config, summary, metrics, max_noise=max_noise)
    card["parameters"] = int(sum(q.numel() for q in model.parameters()))
    with torch.no_grad():
        return save_model(shipped, card, out_dir or weights_dir(), fp16=fp16)


def training_command(config: MaskRefinerTrainingConfig) -> str:
    """The command that reproduces a run of ``config``."""
    command = f"skysift train mask-refiner --seed {config.seed}"
    if config.segmenter != MaskRefinerTrainingConfig.segmenter:
        command += f" --segmenter {config.segmenter}"
    if config.epochs != MaskRefinerTrainingConfig.epochs:
        command += f" --epochs {config.epochs}"
    if config.noise_max != MaskRefinerTrainingConfig.noise_max:
        command += f" --noise-max {config.noise_max:g}"
    if config.noise_fraction != MaskRefinerTrainingConfig.noise_fraction:
        command += f" --noise-fraction {config.noise_fraction:g}"
    if config.noise_channel:
        command += " --noise-channel"
    if config.mask_jitter:
        command += f" --mask-jitter {config.mask_jitter}"
    if config.widths != MaskRefinerTrainingConfig.widths:
        command += " --widths " + ",".join(str(w) for w in config.widths)
    if config.name != MaskRefinerTrainingConfig.name:
        command += f" --name {config.name}"
    if config.threads != 2:
        command += f" --threads {config.threads}"
    return command


def card_for(
    config: MaskRefinerTrainingConfig,
    summary: dict,
    metrics: dict,
    *,
    max_noise: float | None = None,
) -> dict[str, Any]:
    """The model card of a finished run (``max_noise``: :func:`noise_limit`)."""
    from skysift.mask_refine import MAX_BOX, MIN_SCORE, NOISE_SCALE, PSF_SCALE, STAMP
    from skysift.train.segmenter import SOFTENING

    return {
        "name": config.name,
        "task": "the mask of a small segmenter instance drawn again from a native-pixel stamp "
        "(skysift.mask_refine)",
        "classes": ["background", "instance"],
        "architecture": {"kind": "unet", "config": summary["architecture"]},
        "inputs": {
            "stamp": f"{STAMP}x{STAMP} at the image's pixels, centred on the instance's box",
            "channels": "the normalized g, r, z bands; the detector's mask probability of the "
            "instance; the strongest mask probability of every other instance; the PSF FWHM "
            f"(px) / {PSF_SCALE:g}"
            + (
                "; the stamp's background noise / "
                f"{NOISE_SCALE:g} (skysift.mask_refine.with_noise_channel)"
                if config.noise_channel
                else ""
            ),
            "instances": f"raw detector score >= {MIN_SCORE:g}, box side <= {MAX_BOX} px",
            "noise_channel": config.noise_channel,
            "max_noise": max_noise,
            "max_noise_rule": "stamps noisier than this (skysift.mask_refine.stamp_noise) keep "
            f"the detector's mask: the {NOISE_LIMIT_PERCENTILE:g}th percentile of the "
            "training stamps' noise (no limit for a refiner trained with added noise)",
        },
        "normalization": {
            "kind": "segmenter",
            "softening": SOFTENING,
            "formula": "per band: asinh((x - median) / (softening * 1.4826 * MAD)), statistics "
            "of the whole image's unmasked pixels; masked pixels 0 "
            "(skysift.segment.network_input)",
        },
        "bands": ["g", "r", "z"],
        "segmenter": {"name": config.segmenter},
        "trained_on": {
            "fields": f"{config.n_train_fields} training, {config.n_val_fields} validation and "
            f"{config.n_test_fields} test typical DECaLS g, r, z fields of 256x256 "
            "(Burke et al.'s densities; "
            f"skysift.train.mask_refiner.SEED_OFFSET = {SEED_OFFSET})",
            "samples": f"{summary['n_train_stamps']} training and {summary['n_val_stamps']} "
            f"validation detections of {config.segmenter} overlapping a truth source with "
            f"mask IoU >= {MIN_IOU:g}; target: that source's truth mask",
        },
        "training": {
            "command": training_command(config),
            "seed": config.seed,
            "config": config.to_dict(),
            "best_validation_loss": summary["best_val_loss"],
        },
        "metrics": metrics,
    }
