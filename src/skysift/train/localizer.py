"""Train the localizer U-Net on simulated fields (``skysift train localizer``).

Recipe (ASID-L, with the paper's loss bug fixed): random 256x256 crops of whole simulated
fields from every preset, flips and 90-degree rotations, targets at every source with
S/N >= 3, loss = BCE-with-logits + soft Dice, AdamW with a one-cycle learning-rate schedule.
Two targets: the paper's 13-pixel cross-disc (``target="disc"``), or a *peaked* target
(``target="peak"``): a Gaussian of ``target_sigma`` pixels centred on each source's sub-pixel
position, the maximum where Gaussians overlap, so that two sources closer than the disc keep
two maxima. Every ``val_every`` steps the model localizes the validation fields
end to end (tiles, LoG, positions) and is scored against their truth with the evaluation core;
the best F1 is kept. Training resumes from ``run_dir/last.pt`` after an interruption.

Everything is fixed by the config and its seed; the data are generated (resumably) from
training and validation seeds only, never test seeds.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skysift.localizer import LocalizeConfig, Localizer
from skysift.normalization import normalize
from skysift.sim.dataset import LocalizerPatches, iter_shards, write_dataset
from skysift.train.fields import localizer_field_configs

__all__ = ["LocalizerTrainingConfig", "evaluate_fields", "train_localizer"]

log = logging.getLogger(__name__)

#: LoG parameters of the ASID-L paper, used during training; re-tuned afterwards.
PAPER_LOG = {"sigma": 1.43, "threshold": 0.2, "overlap": 0.8}

#: Training targets and how model cards describe them.
TARGETS = {
    "disc": "13-pixel cross-disc (3x3 + 1 px per cardinal direction) at truth S/N >= {snr:g}",
    "peak": "Gaussian of sigma {sigma:g} px at each truth position with S/N >= {snr:g} "
    "(maximum where they overlap)",
}


@dataclass(frozen=True)
class LocalizerTrainingConfig:
    """Everything that fixes a localizer training run."""

    name: str = "localizer"
    widths: tuple[int, ...] = (8, 16, 32, 64, 128)
    softening: float = 4.0
    train_dir: str = "data/localizer_train"
    val_dir: str = "data/localizer_val"
    run_dir: str = "runs/localizer"
    n_train_fields: int = 400
    n_val_fields: int = 40
    field_size: int = 512
    patch: int = 256
    batch_size: int = 8
    steps: int = 3000
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    val_every: int = 250
    seed: int = 0
    threads: int = 2
    target: str = "disc"
    target_sigma: float = 1.0
    target_snr: float = 3.0

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {sorted(TARGETS)}, got {self.target!r}")
        if self.target_sigma <= 0:
            raise ValueError(f"target_sigma must be positive, got {self.target_sigma}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "widths": list(self.widths)}


def card_for(config: LocalizerTrainingConfig, peaks: dict[str, float]) -> dict[str, Any]:
    """Model card skeleton of a localizer trained with ``config``."""
    return {
        "name": config.name,
        "task": "source localization: per-pixel source probability (U-Net) + LoG peaks",
        "architecture": {
            "kind": "unet",
            "config": {"in_channels": 1, "widths": list(config.widths), "batchnorm": True},
        },
        "normalization": {
            "kind": "asinh_mad",
            "softening": config.softening,
            "formula": "asinh((x - median) / (softening * 1.4826 * MAD)), statistics of the "
            "whole image's unmasked pixels; masked pixels 0",
        },
        "target": TARGETS[config.target].format(snr=config.target_snr, sigma=config.target_sigma),
        "peaks": peaks,
        "bands": "any single band, or a chi-like combination of several",
        "trained_on": {
            "presets": ["meerlicht", "decals", "sdss"],
            "pixel_scale_arcsec": [0.262, 0.396, 0.56],
            "psf_fwhm_arcsec": [1.0, 3.0],
            "density_per_arcmin2": [1, 300],
            "artifacts": "all on (cosmic rays, trails, hot pixels, bad columns, spikes, "
            "saturation, amplifier offsets, sky gradients)",
        },
        "training": {
            "command": f"skysift train localizer --steps {config.steps} --seed {config.seed}"
            + (f" --target {config.target}" if config.target != "disc" else ""),
            "seed": config.seed,
            "config": config.to_dict(),
        },
    }


def peaked_target(
    shape: tuple[int, int], x: np.ndarray, y: np.ndarray, *, sigma: float
) -> np.ndarray:
    """Heat-map target: a unit Gaussian at each (sub-pixel) position, maximum where they meet.

    Parameters
    ----------
    shape : (int, int)
        ``(rows, cols)`` of the target.
    x, y : array
        0-based positions (x = column, y = row); positions off the map contribute their
        wings only.
    sigma : float
        Gaussian width in pixels.

    Returns
    -------
    numpy.ndarray
        float32 map in [0, 1].
    """
    target = np.zeros(shape, dtype=np.float32)
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    reach = int(np.ceil(3 * sigma))
    cols0, rows0 = np.rint(x).astype(np.intp), np.rint(y).astype(np.intp)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            rows, cols = rows0 + dy, cols0 + dx
            inside = (rows >= 0) & (rows < shape[0]) & (cols >= 0) & (cols < shape[1])
            value = np.exp(
                -((cols[inside] - x[inside]) ** 2 + (rows[inside] - y[inside]) ** 2)
                / (2 * sigma**2)
            ).astype(np.float32)
            np.maximum.at(target, (rows[inside], cols[inside]), value)
    return target


def _load_fields(config: LocalizerTrainingConfig) -> dict[str, np.ndarray]:
    images, targets = [], []
    for shard in iter_shards(config.train_dir):
        for k in range(shard["image"].shape[0]):
            level, scale = float(shard["level"][k, 0]), float(shard["scale"][k, 0])
            image = shard["image"][k, 0]
            images.append(normalize(image, level, scale, config.softening))
            if config.target == "disc":
                targets.append(shard["target"][k])
                continue
            if "truth_x" not in shard:
                raise ValueError(
                    f"{config.train_dir}: peaked targets need fields written with truth"
                )
            rows = (shard["truth_patch"] == k) & (shard["truth_snr"] >= config.target_snr)
            targets.append(
                peaked_target(
                    image.shape,
                    shard["truth_x"][rows],
                    shard["truth_y"][rows],
                    sigma=config.target_sigma,
                )
            )
    return {"image": np.stack(images), "target": np.stack(targets)}


def _shard_count(directory: str) -> int:
    manifest = Path(directory) / "manifest.json"
    return len(json.loads(manifest.read_text())["shards"]) if manifest.exists() else 0


def _batch(rng: np.random.Generator, fields: dict[str, np.ndarray], size: int, patch: int):
    n, height, width = fields["image"].shape
    images = np.empty((size, 1, patch, patch), dtype=np.float32)
    targets = np.empty((size, 1, patch, patch), dtype=np.float32)
    for k in range(size):
        i = rng.integers(n)
        r, c = rng.integers(0, height - patch + 1), rng.integers(0, width - patch + 1)
        image = fields["image"][i, r : r + patch, c : c + patch]
        target = fields["target"][i, r : r + patch, c : c + patch]
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        image, target = np.rot90(image, turns), np.rot90(target, turns)
        if flip:
            image, target = image[:, ::-1], target[:, ::-1]
        images[k, 0], targets[k, 0] = image, target
    return images, targets


def _loss(logits, target):
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target)
    probability = torch.sigmoid(logits)
    overlap = (probability * target).sum()
    dice = 1.0 - (2.0 * overlap + 1.0) / ((probability**2).sum() + (target**2).sum() + 1.0)
    return bce + dice


def evaluate_fields(
    localizer: Localizer,
    directory: str,
    *,
    required_snr: float = 5.0,
    neutral_snr: float = 2.0,
    radius: float = 1.5,
    probability_maps: list[np.ndarray] | None = None,
) -> dict[str, float]:
    """Localize every field of a dataset with truth and score it (summed TP/FP/FN -> F1)."""
    from skysift.evaluate.matching import match_to_truth
    from skysift.image import Image

    tp = fp = fn = 0
    offsets = []
    for index, shard in enumerate(_truth_shards(directory)):
        image = Image.from_array(shard["image"][0], min_size=16)
        if probability_maps is not None and index < len(probability_maps):
            probability = probability_maps[index]
        else:
            probability = localizer.probability_map(image)
            if probability_maps is not None:
                probability_maps.append(probability)
        peaks = localizer.peaks(probability)
        x, y = peaks[:, 1].astype(float), peaks[:, 0].astype(float)
        match, _ = match_to_truth(
            x,
            y,
            shard["truth_x"],
            shard["truth_y"],
            shard["truth_snr"],
            required_snr=required_snr,
            neutral_snr=neutral_snr,
            radius=radius,
        )
        tp, fp, fn = tp + match.tp, fp + match.fp, fn + match.fn
        offsets.append(np.hypot(match.dx, match.dy))
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "f1": f1,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
    }


def _truth_shards(directory: str):
    for shard in iter_shards(directory):
        for k in range(shard["image"].shape[0]):
            rows = shard["truth_patch"] == k
            yield {
                "image": shard["image"][k],
                "truth_x": shard["truth_x"][rows],
                "truth_y": shard["truth_y"][rows],
                "truth_snr": shard["truth_snr"][rows],
            }


def prepare_data(config: LocalizerTrainingConfig, *, progress: bool = True) -> None:
    """Simulate (or finish simulating) the training and validation fields."""
    write_dataset(
        config.val_dir,
        localizer_field_configs("validation", config.n_val_fields, size=config.field_size),
        LocalizerPatches(size=config.field_size, detection_band_only=True, with_truth=True),
        progress=progress,
        description="localizer validation fields with truth",
    )
    write_dataset(
        config.train_dir,
        localizer_field_configs("train", config.n_train_fields, size=config.field_size),
        LocalizerPatches(
            size=config.field_size,
            detection_band_only=True,
            with_truth=config.target != "disc",
        ),
        progress=progress,
        description="localizer training fields",
    )


def train_localizer(config: LocalizerTrainingConfig, *, progress: bool = True) -> Path:
    """Train (resuming if possible) and return the path of the best weights (safetensors)."""
    import torch

    from skysift.models.runtime import tune_malloc
    from skysift.models.unet import UNet, UNetConfig
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
    logfile = run / "train.log"
    torch.manual_seed(config.seed)
    model = UNet(UNetConfig(widths=config.widths))
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.steps, pct_start=0.1
    )
    rng = np.random.default_rng(config.seed)
    start_step, best_f1 = 0, -1.0
    last = run / "last.pt"
    if last.exists():
        state = torch.load(last, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        restore_random_state(rng, state)
        start_step, best_f1 = state["step"], state["best_f1"]
        log.info("resuming from step %d (best F1 %.4f)", start_step, best_f1)
    fields = _load_fields(config)
    card = card_for(config, PAPER_LOG)
    running, started = [], time.perf_counter()
    steps = range(start_step, config.steps)
    for step in progress_iter(steps, "training localizer", enabled=progress):
        model.train()
        images, targets = _batch(rng, fields, config.batch_size, config.patch)
        loss = _loss(model(torch.from_numpy(images)), torch.from_numpy(targets))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        running.append(loss.item())
        done = step + 1
        if done % config.val_every == 0 or done == config.steps:
            model.eval()
            localizer = Localizer(LocalizeConfig(backend="torch"), module=model, card=card)
            metrics = evaluate_fields(localizer, config.val_dir)
            if _shard_count(config.train_dir) > len(fields["image"]):
                fields = _load_fields(config)  # data still arriving
            entry = {
                "step": done,
                "loss": float(np.mean(running)),
                **metrics,
                "train_fields": len(fields["image"]),
                "lr": schedule.get_last_lr()[0],
                "minutes": (time.perf_counter() - started) / 60,
            }
            running = []
            append_log(logfile, entry)
            if metrics["f1"] > best_f1:
                best_f1 = metrics["f1"]
                save_weights(model, run / "best.safetensors")
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    **random_state(rng),
                    "step": done,
                    "best_f1": best_f1,
                },
                last,
            )
    return run / "best.safetensors"


def sweep_peaks(
    localizer: Localizer,
    directory: str,
    *,
    sigmas=(1.0, 1.43, 2.0),
    thresholds=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5),
    overlaps=(0.5, 0.8),
) -> list[dict[str, float]]:
    """F1 on validation fields for each LoG (sigma, threshold, overlap); maps computed once."""
    maps: list[np.ndarray] = []
    rows = []
    base = localizer.config
    for sigma in sigmas:
        for threshold in thresholds:
            for overlap in overlaps:
                localizer.config = dataclasses.replace(
                    base, log_sigma=sigma, threshold=threshold, overlap=overlap
                )
                metrics = evaluate_fields(localizer, directory, probability_maps=maps)
                rows.append({"sigma": sigma, "threshold": threshold, "overlap": overlap, **metrics})
    localizer.config = base
    return rows


def best_peaks(rows: list[dict[str, float]]) -> dict[str, float]:
    """The sweep row with the highest F1 (ties: the higher threshold)."""
    best = max(rows, key=lambda r: (r["f1"], r["threshold"]))
    return {"sigma": best["sigma"], "threshold": best["threshold"], "overlap": best["overlap"]}


def finish_localizer(
    config: LocalizerTrainingConfig,
    best_weights: Path,
    *,
    out_dir: Path | None = None,
    test_dir: str = "data/localizer_test",
    n_test_fields: int = 24,
    progress: bool = True,
) -> Path:
    """Tune LoG on validation fields, measure held-out test fields, write weights + card.

    The LoG sweep (validation seeds only) is saved to ``run_dir/log_sweep.json``; the card's
    metrics come from ``n_test_fields`` fields with test seeds, never seen in training or
    tuning. Weights are stored as fp16 when that changes the validation F1 by less than 0.002.
    """
    import torch
    from safetensors.torch import load_file

    from skysift.models.registry import save_model, weights_dir
    from skysift.models.unet import UNet, UNetConfig

    model = UNet(UNetConfig(widths=config.widths))
    model.load_state_dict(load_file(str(best_weights)))
    model.eval()
    card = card_for(config, PAPER_LOG)
    localizer = Localizer(LocalizeConfig(), module=model, card=card)
    rows = sweep_peaks(localizer, config.val_dir)
    Path(config.run_dir, "log_sweep.json").write_text(json.dumps(rows, indent=1) + "\n")
    peaks = best_peaks(rows)
    card["peaks"] = peaks
    localizer = Localizer(LocalizeConfig(), module=model, card=card)
    validation = evaluate_fields(localizer, config.val_dir)

    half = UNet(UNetConfig(widths=config.widths))
    half.load_state_dict({k: v.half().to(v.dtype) for k, v in model.state_dict().items()})
    half.eval()
    half_validation = evaluate_fields(
        Localizer(LocalizeConfig(), module=half, card=card), config.val_dir
    )
    fp16 = abs(half_validation["f1"] - validation["f1"]) < 0.002

    write_dataset(
        test_dir,
        localizer_field_configs("test", n_test_fields, size=config.field_size),
        LocalizerPatches(size=config.field_size, detection_band_only=True, with_truth=True),
        progress=progress,
        description="localizer test fields with truth (held out)",
    )
    shipped = half if fp16 else model
    test = evaluate_fields(Localizer(LocalizeConfig(), module=shipped, card=card), test_dir)
    card["parameters"] = int(sum(p.numel() for p in model.parameters()))
    card["metrics"] = {
        "validation_f1_paper_log": max(
            r["f1"]
            for r in rows
            if r["sigma"] == PAPER_LOG["sigma"]
            and r["threshold"] == PAPER_LOG["threshold"]
            and r["overlap"] == PAPER_LOG["overlap"]
        ),
        "validation_f1_tuned_log": validation["f1"],
        "test_fields": n_test_fields,
        "test_f1": test["f1"],
        "test_precision": test["precision"],
        "test_recall": test["recall"],
        "scoring": "truth S/N >= 5 required, 2 <= S/N < 5 neutral, match radius 1.5 px; "
        "mixed presets, densities 1-300/arcmin^2, all artifacts",
    }
    with torch.no_grad():
        return save_model(shipped, card, out_dir or weights_dir(), fp16=fp16)
