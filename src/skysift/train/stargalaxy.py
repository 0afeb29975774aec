"""Train, calibrate and evaluate the star/galaxy classifier (ASID-C).

Splits: the test set is its own fields with seeds from the test range (never trained, tuned or
calibrated on); the training fields' cutouts are split 50:20:10 into train, validation (early
stopping) and calibration (Platt maps), stratified by class and S/N bin — the paper's
50/20/20/10 with the 20 % test part taken from held-out fields instead.

Training follows the paper: Adam at 1e-3, exponential decay (0.99 per epoch) after 8 epochs,
early stopping when the validation loss has not improved for 10 epochs, binary focal loss with
``(alpha, gamma)`` (BCE at alpha=1, gamma=0, the paper's choice), a random shift of up to one
pixel as the 34 -> 32 crop, and mirror images of the detector (a cutout flipped together with
its position, see ``_augment``).

Beyond the paper, the network can be given the image's seeing (``seeing_input``, the default):
each field's PSF FWHM is measured from its own bright sources' cutouts exactly as
:class:`skysift.stargalaxy.StarGalaxyClassifier` measures it at inference
(:func:`skysift.stargalaxy.seeing_from_cutouts`), never taken from the simulation.
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

from skysift.sim.dataset import iter_shards, write_dataset
from skysift.train.stargalaxy_data import (
    DETECTOR,
    PSF_ELLIPTICITY_EDGE,
    PSF_SIZE_GROWTH,
    SOFTENING,
    StarGalaxyCutouts,
    stargalaxy_field_configs,
)

__all__ = [
    "SNR_BINS",
    "StarGalaxyTrainingConfig",
    "focal_loss",
    "load_split",
    "network_context",
    "prepare_data",
    "train_stargalaxy",
]

log = logging.getLogger(__name__)

#: S/N bin edges of the evaluation tables: the paper's log10 S/N bins 0.84 ... 1.98 (as edges
#: 0.7 ... 2.12) plus the 3-5 bin below them.
SNR_BINS = (3.0, 5.0, 9.5, 18.0, 35.0, 68.0, 1e9)


@dataclass(frozen=True)
class StarGalaxyTrainingConfig:
    """Everything that fixes a star/galaxy training run."""

    name: str = "stargalaxy"
    data_dir: str = "data/stargalaxy_train"
    test_dir: str = "data/stargalaxy_test"
    run_dir: str = "runs/stargalaxy"
    n_train_fields: int = 120
    n_test_fields: int = 30
    position_branch: bool = True
    position_input: bool = True
    seeing_input: bool = True
    focal_alpha: float = 1.0
    focal_gamma: float = 0.0
    batch_size: int = 512
    learning_rate: float = 1e-3
    decay_after: int = 8
    decay_rate: float = 0.99
    max_epochs: int = 30
    patience: int = 10
    max_train_samples: int | None = None
    seed: int = 0
    threads: int = 2

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def prepare_data(config: StarGalaxyTrainingConfig, *, progress: bool = True) -> None:
    """Simulate (or finish simulating) the training and test fields and cut the samples."""
    for directory, role, n in (
        (config.data_dir, "train", config.n_train_fields),
        (config.test_dir, "test", config.n_test_fields),
    ):
        write_dataset(
            directory,
            stargalaxy_field_configs(role, n),
            StarGalaxyCutouts(),
            progress=progress,
            description=f"star/galaxy cutouts at localizer positions, {role} fields",
        )


def _snr_bin(snr: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(SNR_BINS, snr, side="right") - 1, 0, len(SNR_BINS) - 2)


def load_split(directory: str, *, fields: list[str] | None = None) -> dict[str, np.ndarray]:
    """All samples of a dataset directory concatenated (cutouts stay float16)."""
    parts: dict[str, list[np.ndarray]] = {}
    for shard in iter_shards(directory):
        for key in fields or list(shard):
            parts.setdefault(key, []).append(shard[key])
    if not parts:
        from skysift.errors import SkysiftError

        raise SkysiftError(f"no star/galaxy samples in {directory}; run prepare_data first")
    data = {key: np.concatenate(values) for key, values in parts.items()}
    if {"cutout", "seed", "edge"} <= data.keys():
        data["seeing"] = field_seeing(data)
    return data


def field_seeing(data: dict[str, np.ndarray]) -> np.ndarray:
    """Per sample, its field's seeing FWHM (pixels) measured from the field's cutouts.

    NaN where a field has too few bright sources (the network then gets its reference)."""
    from skysift.stargalaxy import seeing_from_cutouts

    seeing = np.full(len(data["seed"]), np.nan, np.float32)
    for seed in np.unique(data["seed"]):
        rows = np.flatnonzero(data["seed"] == seed)
        usable = rows[~data["edge"][rows]]
        seeing[rows] = seeing_from_cutouts(data["cutout"][usable], softening=SOFTENING)
    return seeing


def network_context(arch, data: dict[str, np.ndarray], index=slice(None)) -> np.ndarray:
    """The network's second input for ``data[index]``: positions and/or the seeing input."""
    if arch.seeing_input and "seeing" not in data:
        from skysift.errors import SkysiftError

        raise SkysiftError(
            "a seeing-input network needs each sample's field seeing ('seeing'; "
            "load_split adds it from the cutouts)"
        )
    seeing = data["seeing"][index] if arch.seeing_input else None
    return arch.context(data["position"][index], seeing)


def split_indices(labels, snr, *, seed: int = 0) -> dict[str, np.ndarray]:
    """Stratified (class x S/N bin) train/validation/calibration indices in 50:20:10."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels, int)
    strata = labels * 10 + _snr_bin(np.asarray(snr))
    counts = np.bincount(strata, minlength=20)
    strata = np.where(counts[strata] < 10, labels * 10 + 9, strata)  # rare bins: class only
    if np.unique(strata, return_counts=True)[1].min(initial=10) < 10:
        strata = labels  # tiny data: stratify by class alone
    index = np.arange(len(strata))
    train, rest = train_test_split(index, train_size=5 / 8, stratify=strata, random_state=seed)
    validation, calibration = train_test_split(
        rest, train_size=2 / 3, stratify=strata[rest], random_state=seed
    )
    return {
        "train": np.sort(train),
        "validation": np.sort(validation),
        "calibration": np.sort(calibration),
    }


def focal_loss(logits, target, *, alpha: float = 1.0, gamma: float = 0.0):
    """Binary focal loss (Lin et al. 2017) on logits; ``alpha=1, gamma=0`` is BCE.

    ``FL = -alpha y (1 - p)^gamma log p - (1 - alpha) ... `` with ASID-C's convention that alpha
    weights the positive class and ``1 - alpha`` the negative one *unless* alpha is 1, where
    both classes get weight 1 (the plain cross entropy the paper ends up using).
    """
    import torch
    import torch.nn.functional as F

    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if gamma:
        p = torch.sigmoid(logits)
        p_true = p * target + (1 - p) * (1 - target)
        bce = bce * (1 - p_true) ** gamma
    if alpha != 1.0:
        bce = bce * (alpha * target + (1 - alpha) * (1 - target))
    return bce.mean()


def _augment(rng, cutouts: np.ndarray, context: np.ndarray, *, position: bool = True):
    """Random <= 1 px crop shift per sample, plus one detector-consistent mirror per batch.

    Mirroring a cutout left-right is only physical together with mirroring the position
    (x -> -x about the optical axis): the PSF law is symmetric about the axis, so the mirrored
    source is one the telescope could have seen. Same for up-down and the transpose. When the
    context starts with the position (``position``) its first two columns follow the mirror;
    the seeing is a property of the image and stays as it is.
    """
    n, size = cutouts.shape[0], cutouts.shape[1] - 2
    ox = rng.integers(0, 3, n)
    oy = rng.integers(0, 3, n)
    ramp = np.arange(size)
    rows = (oy[:, None] + ramp)[:, :, None]
    cols = (ox[:, None] + ramp)[:, None, :]
    out = cutouts[np.arange(n)[:, None, None], rows, cols].astype(np.float32)
    pos = context.copy()
    if rng.random() < 0.5:
        out = out[:, :, ::-1]
        if position:
            pos[:, 0] = -pos[:, 0]
    if rng.random() < 0.5:
        out = out[:, ::-1, :]
        if position:
            pos[:, 1] = -pos[:, 1]
    if rng.random() < 0.5:
        out = out.transpose(0, 2, 1)
        if position:
            pos[:, [0, 1]] = pos[:, [1, 0]]
    return np.ascontiguousarray(out), np.ascontiguousarray(pos)


def _centre(cutouts: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(cutouts[:, 1:-1, 1:-1].astype(np.float32))


def predict_raw(module, cutouts: np.ndarray, positions: np.ndarray, *, batch: int = 4096):
    """Raw sigmoid outputs of ``module`` on 34 x 34 cutouts (centre-cropped)."""
    import torch

    module.eval()
    out = np.empty(len(cutouts), np.float32)
    with torch.inference_mode():
        for start in range(0, len(cutouts), batch):
            stop = start + batch
            images = torch.from_numpy(_centre(cutouts[start:stop])[:, None])
            pos = torch.from_numpy(np.ascontiguousarray(positions[start:stop]))
            out[start:stop] = torch.sigmoid(module(images, pos)).numpy()
    return out


def _validation_loss(module, data, context, index, config) -> float:
    import torch

    module.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(index), 4096):
            chunk = index[start : start + 4096]
            images = torch.from_numpy(_centre(data["cutout"][chunk])[:, None])
            pos = torch.from_numpy(context[chunk])
            target = torch.from_numpy(data["label"][chunk].astype(np.float32))
            loss = focal_loss(
                module(images, pos), target, alpha=config.focal_alpha, gamma=config.focal_gamma
            )
            total += float(loss) * len(chunk)
            count += len(chunk)
    return total / count


def train_stargalaxy(
    config: StarGalaxyTrainingConfig,
    data: dict[str, np.ndarray] | None = None,
    splits: dict[str, np.ndarray] | None = None,
    *,
    progress: bool = True,
):
    """Train one network; returns ``(module, history)`` with the best-validation weights.

    Checkpoints every epoch to ``run_dir/last.pt`` and resumes from it.
    """
    import torch

    from skysift.models.runtime import tune_malloc
    from skysift.models.stargalaxy import StarGalaxyConfig, StarGalaxyNet
    from skysift.progress import progress_iter
    from skysift.train.checkpoints import random_state, restore_random_state

    tune_malloc()
    torch.set_num_threads(config.threads)
    if data is None:
        data = load_split(config.data_dir)
    if splits is None:
        splits = split_indices(data["label"], data["snr"])
    train_index = splits["train"]
    if config.max_train_samples:  # a fixed random subset, the same for every seed
        subset = np.random.default_rng(0).permutation(train_index.size)[: config.max_train_samples]
        train_index = np.sort(train_index[subset])
    run = Path(config.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    arch = StarGalaxyConfig(
        position_widths=(64, 32) if config.position_branch else (),
        position_input=config.position_input or not config.position_branch,
        seeing_input=config.seeing_input and config.position_branch,
    )
    context = network_context(arch, data)
    module = StarGalaxyNet(arch)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.learning_rate)
    rng = np.random.default_rng(config.seed)
    history: list[dict[str, float]] = []
    best_loss, best_state, stale, start_epoch = np.inf, None, 0, 0
    last = run / "last.pt"
    if last.exists():
        state = torch.load(last, weights_only=False)
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        restore_random_state(rng, state)
        history, best_loss, stale = state["history"], state["best_loss"], state["stale"]
        best_state, start_epoch = state["best_state"], state["epoch"]
        log.info("resuming %s at epoch %d", config.run_dir, start_epoch)
    started = time.perf_counter()
    for epoch in range(start_epoch, config.max_epochs):
        if stale >= config.patience:
            break
        lr = config.learning_rate * config.decay_rate ** max(0, epoch - config.decay_after)
        for group in optimizer.param_groups:
            group["lr"] = lr
        module.train()
        order = rng.permutation(train_index)
        losses = []
        batches = range(0, len(order), config.batch_size)
        for start in progress_iter(batches, f"epoch {epoch + 1}", enabled=progress):
            chunk = np.sort(order[start : start + config.batch_size])
            images, pos = _augment(
                rng, data["cutout"][chunk], context[chunk], position=arch.position_input
            )
            target = torch.from_numpy(data["label"][chunk].astype(np.float32))
            loss = focal_loss(
                module(torch.from_numpy(images[:, None]), torch.from_numpy(pos)),
                target,
                alpha=config.focal_alpha,
                gamma=config.focal_gamma,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        val_loss = _validation_loss(module, data, context, splits["validation"], config)
        entry = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "val_loss": val_loss,
            "lr": lr,
            "minutes": (time.perf_counter() - started) / 60,
        }
        history.append(entry)
        log.info("%s %s", config.run_dir, entry)
        with open(run / "train.log", "a") as handle:
            handle.write(json.dumps(entry) + "\n")
        if val_loss < best_loss - 1e-5:
            best_loss, stale = val_loss, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            stale += 1
        torch.save(
            {
                "model": module.state_dict(),
                "optimizer": optimizer.state_dict(),
                **random_state(rng),
                "history": history,
                "best_loss": best_loss,
                "stale": stale,
                "best_state": best_state,
                "epoch": epoch + 1,
            },
            last,
        )
    if best_state is not None:
        module.load_state_dict(best_state)
    module.eval()
    return module, history


def _command(config: StarGalaxyTrainingConfig) -> str:
    """The CLI call that reproduces ``config`` (options that differ from the defaults)."""
    default = StarGalaxyTrainingConfig()
    parts = ["skysift train stargalaxy", f"--seed {config.seed}"]
    for name, flag in (
        ("n_train_fields", "--n-train-fields"),
        ("n_test_fields", "--n-test-fields"),
        ("focal_alpha", "--focal-alpha"),
        ("focal_gamma", "--focal-gamma"),
        ("max_epochs", "--max-epochs"),
        ("threads", "--threads"),
    ):
        if getattr(config, name) != getattr(default, name):
            parts.append(f"{flag} {getattr(config, name)}")
    if not config.position_branch:
        parts.append("--no-position")
    else:
        if not config.seeing_input:
            parts.append("--no-seeing")
        if not config.position_input:
            parts.append("--seeing-only")
    return " ".join(parts)


def card_for(config: StarGalaxyTrainingConfig, module) -> dict[str, Any]:
    """Model card skeleton of a star/galaxy network trained with ``config``."""
    return {
        "name": config.name,
        "task": "star/galaxy classification of localized sources: calibrated P(star)",
        "architecture": {"kind": "stargalaxy", "config": module.config.to_dict()},
        "parameters": module.num_parameters(),
        "normalization": {
            "kind": "sep_background_asinh",
            "softening": SOFTENING,
            "formula": "asinh((x - SEP 64-px mesh background) / (softening * 1.4826 * MAD)); "
            "masked and off-image pixels 0; 32x32 cutout, source pixel at index 16",
        },
        "position": {
            "formula": "((x + origin_x - cx) / half_width, (y + origin_y - cy) / half_height)",
            "training_detector": {
                "optical_centre": list(DETECTOR.optical_centre),
                "half_size": list(DETECTOR.half_size),
                "psf_size_growth": PSF_SIZE_GROWTH,
                "psf_ellipticity_edge": PSF_ELLIPTICITY_EDGE,
            },
        },
        "seeing": (
            {
                "formula": "log(FWHM / seeing_reference), FWHM in pixels measured on the image "
                "by skysift.stargalaxy.seeing_from_cutouts",
                "seeing_reference": module.config.seeing_reference,
            }
            if module.config.seeing_input
            else None
        ),
        "labels": "1 = star, 0 = galaxy",
        "trained_on": {
            "preset": "meerlicht",
            "detector_pixels": 10560,
            "field_pixels": 1024,
            "truth_snr_min": 3.0,
            "positions": "the shipped localizer's detections matched to truth within 1.5 px",
        },
        "training": {
            "command": _command(config),
            "seed": config.seed,
            "config": config.to_dict(),
        },
    }


def calibrate(module, data, splits) -> dict[str, Any]:
    """Fit Platt and L-T Platt on the calibration split; returns both maps."""
    from skysift.calibration import fit_platt

    index = splits["calibration"]
    raw = predict_raw(module, data["cutout"][index], network_context(module.config, data, index))
    labels = data["label"][index]
    return {
        "platt": fit_platt(raw, labels, logit_input=False),
        "lt_platt": fit_platt(raw, labels, logit_input=True),
    }


def test_metrics(p_star: np.ndarray, test: dict[str, np.ndarray]) -> dict[str, Any]:
    """Overall, per-S/N-bin and inner/outer metrics of P(star) on the test split."""
    from skysift.evaluate.classification import (
        binned_classification_metrics,
        classification_metrics,
    )

    labels = test["label"]
    table = binned_classification_metrics(labels, p_star, test["snr"], bins=SNR_BINS)
    inner = test["radius"] < 0.5
    return {
        "overall": classification_metrics(labels, p_star),
        "by_snr": [dict(zip(table.colnames, map(_plain, row), strict=True)) for row in table],
        "inner": classification_metrics(labels[inner], p_star[inner]),
        "outer": classification_metrics(labels[~inner], p_star[~inner]),
    }


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and not np.isfinite(value) else value


def finish_stargalaxy(
    config: StarGalaxyTrainingConfig,
    module,
    *,
    out_dir: Path | None = None,
    data: dict[str, np.ndarray] | None = None,
    splits: dict[str, np.ndarray] | None = None,
    test: dict[str, np.ndarray] | None = None,
) -> Path:
    """Calibrate, score on the held-out test fields and write weights + card."""
    from skysift.models.registry import save_model, weights_dir

    data = data if data is not None else load_split(config.data_dir)
    splits = splits if splits is not None else split_indices(data["label"], data["snr"])
    test = test if test is not None else load_split(config.test_dir)
    maps = calibrate(module, data, splits)
    raw = predict_raw(module, test["cutout"], network_context(module.config, test))
    p_star = maps["lt_platt"](raw)
    card = card_for(config, module)
    card["calibration"] = maps["lt_platt"].to_dict()
    card["calibration_alternatives"] = {"platt": maps["platt"].to_dict()}
    metrics = test_metrics(p_star, test)
    card["metrics"] = {
        "split": f"{len(test['label'])} cutouts from {config.n_test_fields} held-out test-seed "
        "fields",
        "star_fraction": float(np.mean(test["label"])),
        "calibrated": metrics["overall"],
        "raw": test_metrics(raw, test)["overall"],
        "by_snr": metrics["by_snr"],
        "inner_outer_radius": 0.5,
        "inner": metrics["inner"],
        "outer": metrics["outer"],
    }
    card["data"] = {
        "train": int(splits["train"].size),
        "validation": int(splits["validation"].size),
        "calibration": int(splits["calibration"].size),
        "test": len(test["label"]),
    }
    return save_model(module, card, out_dir or weights_dir(), fp16=True)
