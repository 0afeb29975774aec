"""Train and evaluate the shred classifier (Galaxy Shreds, on skysift's simulations).

Data: :mod:`skysift.train.shred_data`, three sets of fields from their own seed ranges:
training (clumpy disks four times as common), validation (early stopping and the prior the
output is moved to) and test (held-out figures, read once at the end). Nothing is tuned on
the test fields.

Training: binary cross-entropy, Adam at ``learning_rate`` with a cosine decay over
``epochs``; each batch is flipped and turned by multiples of 90 degrees (both views
together, as the paper's rotations and flips); the epoch with the lowest validation loss is
kept. The validation loss is computed after the output's prior is moved to the validation
fields' share of shreds: the training fields hold four times as many, and Bayes' rule
(Saerens et al. 2002) for a sigmoid output is a shift of the last bias by the difference of
the two log-odds, which is applied to the shipped weights so the network gives P(shred) at
the typical field's share.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skysift.sim.dataset import iter_shards, write_role_datasets
from skysift.train.shred_data import ShredStamps, shred_field_configs

__all__ = [
    "ShredTrainingConfig",
    "finish_shred",
    "held_out_metrics",
    "load_samples",
    "prepare_data",
    "prior_shift",
    "train_shred",
]

log = logging.getLogger(__name__)

#: S/N bin edges of the held-out tables.
SNR_BINS = (5.0, 10.0, 20.0, 50.0, 100.0, math.inf)


@dataclass(frozen=True)
class ShredTrainingConfig:
    """Everything that fixes a shred-classifier training run."""

    name: str = "shred"
    train_dir: str = "data/shred_train"
    val_dir: str = "data/shred_validation"
    test_dir: str = "data/shred_test"
    run_dir: str = "runs/shred"
    n_train_fields: int = 240
    n_val_fields: int = 30
    n_test_fields: int = 60
    filters: int = 32
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    workers: int = 2

    def __post_init__(self) -> None:
        from skysift.errors import InvalidParameterError

        for key in ("n_train_fields", "n_val_fields", "n_test_fields", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise InvalidParameterError(f"{key} must be >= 1; got {getattr(self, key)}")
        if not self.learning_rate > 0 or self.weight_decay < 0:
            raise InvalidParameterError("learning_rate must be > 0 and weight_decay >= 0")
        if self.threads < 1 or self.workers < 1:
            raise InvalidParameterError("threads and workers must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def prepare_data(config: ShredTrainingConfig, *, progress: bool = True) -> None:
    """Simulate (or finish simulating) the training, validation and test fields."""
    write_role_datasets(
        (
            (config.train_dir, "train", config.n_train_fields),
            (config.val_dir, "validation", config.n_val_fields),
            (config.test_dir, "test", config.n_test_fields),
        ),
        shred_field_configs,
        ShredStamps(),
        description="shred classifier: both views of every source, {role} fields",
        workers=config.workers,
        progress=progress,
    )


def load_samples(directory: str) -> dict[str, np.ndarray]:
    """Every sample of a shred dataset directory, concatenated (cutouts stay float16)."""
    from skysift.errors import SkysiftError

    parts: dict[str, list[np.ndarray]] = {}
    for shard in iter_shards(directory):
        for key, value in shard.items():
            parts.setdefault(key, []).append(value)
    if not parts:
        raise SkysiftError(f"no shred samples in {directory}; run prepare_data first")
    return {key: np.concatenate(value) for key, value in parts.items()}


def log_odds(fraction: float) -> float:
    """``log(f / (1 - f))``."""
    return math.log(fraction / (1.0 - fraction))


def prior_shift(trained: float, expected: float) -> float:
    """The logit shift that moves a sigmoid's posterior from one class prior to another
    (Bayes' rule; Saerens, Latinne & Decaestecker 2002): ``logit(expected) -
    logit(trained)``."""
    from skysift.errors import InvalidParameterError

    for name, value in (("trained", trained), ("expected", expected)):
        if not 0.0 < value < 1.0:
            raise InvalidParameterError(f"{name} shred fraction must be in (0, 1); got {value}")
    return log_odds(expected) - log_odds(trained)


def architecture(bands: int, filters: int):
    """The shred network: ASID-C's image branch on both views of ``bands`` bands, a context
    branch of 32 on the seeing alone, one hidden layer of 64, one output (P(shred))."""
    from skysift.models.stargalaxy_inputs import StarGalaxyConfig

    return StarGalaxyConfig(
        in_channels=2 * bands,
        outputs=1,
        filters=filters,
        position_input=False,
        seeing_input=True,
        position_widths=(32,),
        head_widths=(64,),
    )


def _augment(batch, rng: np.random.Generator):
    """Flip and turn a batch by one random symmetry of the square (both views together)."""
    import torch

    k = int(rng.integers(4))
    out = torch.rot90(batch, k, dims=(2, 3)) if k else batch
    return torch.flip(out, dims=(3,)) if rng.random() < 0.5 else out


def _logits(module, cutouts, context, shift: float, batch: int = 2048) -> np.ndarray:
    """Per-sample logits of ``module`` plus ``shift`` (no gradients)."""
    import torch

    module.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(cutouts), batch):
            x = torch.from_numpy(np.asarray(cutouts[start : start + batch], np.float32))
            c = torch.from_numpy(context[start : start + batch])
            out.append(module(x, c).numpy().astype(np.float64) + shift)
    return np.concatenate(out) if out else np.zeros(0)


def binary_log_loss(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean binary cross-entropy of logits against 0/1 labels."""
    z = np.asarray(logits, float)
    y = np.asarray(labels, float)
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def train_shred(config: ShredTrainingConfig, *, progress: bool = True) -> Path:
    """Train the shred classifier; returns the run directory (``best.safetensors``,
    ``log.jsonl``, ``card.json``)."""
    import torch
    from safetensors.torch import save_file

    from skysift.io import atomic_write
    from skysift.models.stargalaxy import StarGalaxyNet
    from skysift.progress import progress_iter

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    run = Path(config.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    train = load_samples(config.train_dir)
    val = load_samples(config.val_dir)
    bands = train["cutouts"].shape[1] // 2
    net_config = architecture(bands, config.filters)
    module = StarGalaxyNet(net_config)
    trained_fraction = float(np.mean(train["label"]))
    expected_fraction = float(np.mean(val["label"]))
    shift = prior_shift(trained_fraction, expected_fraction)
    context = {
        role: net_config.context(np.zeros((len(d["label"]), 2)), seeing_fwhm=d["psf_fwhm"])
        for role, d in (("train", train), ("val", val))
    }
    optimizer = torch.optim.Adam(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    steps_per_epoch = math.ceil(len(train["label"]) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * steps_per_epoch
    )
    loss_fn = torch.nn.BCEWithLogitsLoss()
    labels = torch.from_numpy(train["label"].astype(np.float32))
    best = math.inf
    log_path = run / "log.jsonl"
    log_path.write_text("")
    for epoch in progress_iter(range(config.epochs), "training shred", enabled=progress):
        start = time.perf_counter()
        module.train()
        order = rng.permutation(len(labels))
        total = 0.0
        for first in range(0, len(order), config.batch_size):
            index = np.sort(order[first : first + config.batch_size])
            x = torch.from_numpy(train["cutouts"][index].astype(np.float32))
            x = _augment(x, rng)
            c = torch.from_numpy(context["train"][index])
            loss = loss_fn(module(x, c), labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(index)
        val_logits = _logits(module, val["cutouts"], context["val"], shift)
        val_loss = binary_log_loss(val_logits, val["label"])
        entry = {
            "epoch": epoch + 1,
            "train_loss": total / len(labels),
            "val_loss": val_loss,
            "seconds": time.perf_counter() - start,
        }
        with open(log_path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")
        log.info("epoch %d: %s", epoch + 1, entry)
        if val_loss < best:
            best = val_loss
            state = {k: v.detach().clone() for k, v in module.state_dict().items()}
            with atomic_write(run / "best.safetensors") as tmp:
                save_file(state, str(tmp))
    summary = {
        "trained_fraction": trained_fraction,
        "expected_fraction": expected_fraction,
        "logit_shift": shift,
        "best_val_loss": best,
        "architecture": net_config.to_dict(),
        "config": config.to_dict(),
    }
    with atomic_write(run / "summary.json") as tmp:
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
    return run


def _snr_table(p: np.ndarray, data: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Per S/N bin: shreds found (P >= 0.5) and galaxies and stars taken for shreds."""
    rows = []
    for low, high in itertools.pairwise(SNR_BINS):
        inside = (data["snr"] >= low) & (data["snr"] < high)
        row: dict[str, Any] = {"snr_min": low, "snr_max": high if math.isfinite(high) else None}
        for kind in ("shred", "galaxy", "star"):
            chosen = inside & (data["kind"] == kind)
            row[f"n_{kind}"] = int(chosen.sum())
            row[f"{kind}_flagged"] = float(np.mean(p[chosen] >= 0.5)) if chosen.any() else None
        rows.append(row)
    return rows


def held_out_metrics(p: np.ndarray, data: dict[str, np.ndarray]) -> dict[str, Any]:
    """AUC, log loss, accuracy and the shreds' precision and recall at P >= 0.5, overall,
    among galaxies and shreds only (the paper's population), and by S/N."""
    from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

    labels = data["label"].astype(int)
    out: dict[str, Any] = {"n": int(labels.size), "n_shreds": int(labels.sum())}
    for name, chosen in (
        ("all_sources", np.ones(labels.size, bool)),
        ("galaxies_and_shreds", data["kind"] != "star"),
    ):
        y, q = labels[chosen], p[chosen]
        precision, recall, f1, _ = precision_recall_fscore_support(
            y, q >= 0.5, average="binary", zero_division=0
        )
        logits = np.log(np.clip(q, 1e-7, 1)) - np.log(np.clip(1 - q, 1e-7, 1))
        out[name] = {
            "auc": float(roc_auc_score(y, q)) if np.unique(y).size == 2 else math.nan,
            "log_loss": binary_log_loss(logits, y),
            "accuracy": float(np.mean((q >= 0.5) == y)),
            "shred_precision": float(precision),
            "shred_recall": float(recall),
            "shred_f1": float(f1),
        }
    out["by_snr"] = _snr_table(p, data)
    return out


def finish_shred(
    config: ShredTrainingConfig,
    best_weights: Path,
    *,
    out_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Move the output to the validation share of shreds, measure the held-out test fields
    and write weights + card (fp16 when it holds)."""
    import torch
    from safetensors.torch import load_file

    from skysift.models.registry import save_model, weights_dir
    from skysift.models.stargalaxy import StarGalaxyConfig, StarGalaxyNet
    from skysift.second_look import predict_probabilities

    summary = json.loads(Path(config.run_dir, "summary.json").read_text())
    net_config = StarGalaxyConfig.from_dict(summary["architecture"])
    model = StarGalaxyNet(net_config)
    model.load_state_dict(load_file(str(best_weights)))
    with torch.no_grad():
        model.head[-1].bias += summary["logit_shift"]
    half = StarGalaxyNet(net_config)
    half.load_state_dict({k: v.half().to(v.dtype) for k, v in model.state_dict().items()})
    val = load_samples(config.val_dir)
    val_context = net_config.context(np.zeros((len(val["label"]), 2)), seeing_fwhm=val["psf_fwhm"])
    val_cutouts = val["cutouts"].astype(np.float32)
    p_full = predict_probabilities(model, val_cutouts, val_context)[:, 1]
    p_half = predict_probabilities(half, val_cutouts, val_context)[:, 1]
    fp16 = float(np.abs(p_full - p_half).max()) < 0.01
    shipped = half if fp16 else model
    test = load_samples(config.test_dir)
    test_context = net_config.context(
        np.zeros((len(test["label"]), 2)), seeing_fwhm=test["psf_fwhm"]
    )
    p_test = predict_probabilities(shipped, test["cutouts"].astype(np.float32), test_context)[:, 1]
    metrics = {
        "validation": held_out_metrics(p_half if fp16 else p_full, val),
        "test": held_out_metrics(p_test, test),
    }
    Path(config.run_dir, "test_metrics.json").write_text(
        json.dumps(metrics, indent=1, default=float) + "\n"
    )
    card = card_for(config, summary, metrics)
    card["parameters"] = int(sum(q.numel() for q in model.parameters()))
    with torch.no_grad():
        return save_model(shipped, card, out_dir or weights_dir(), fp16=fp16)


def training_command(config: ShredTrainingConfig) -> str:
    """The command that reproduces a run of ``config`` (options that differ from the
    defaults spelled out)."""
    command = f"skysift train shred --seed {config.seed}"
    if config.threads != 2:
        command += f" --threads {config.threads}"
    return command


def card_for(config: ShredTrainingConfig, summary: dict, metrics: dict) -> dict[str, Any]:
    """The model card of a finished run."""
    from skysift.shreds import CONTEXT_ZOOM, CUTOUT
    from skysift.train.shred_data import FIELD_SIZE, SOFTENING, TRAINING_GALAXY_MIX

    return {
        "name": config.name,
        "task": "P(shred): whether a catalogued source is a star-forming clump of a larger "
        "galaxy (Galaxy Shreds), from two views of every band and the PSF FWHM",
        "classes": ["source", "shred"],
        "views": {
            "native": f"{CUTOUT}x{CUTOUT} at the image's pixel scale",
            "context": f"{CUTOUT * CONTEXT_ZOOM}x{CUTOUT * CONTEXT_ZOOM} averaged over "
            f"{CONTEXT_ZOOM}x{CONTEXT_ZOOM} blocks",
            "centre": "the source's pixel (skysift.cutouts.extract_cutouts)",
        },
        "architecture": {"kind": "stargalaxy", "config": summary["architecture"]},
        "normalization": {
            "kind": "segmenter",
            "softening": SOFTENING,
            "formula": "per band: asinh((x - median) / (softening * 1.4826 * MAD)), statistics "
            "of the whole image's unmasked pixels; masked pixels 0 "
            "(skysift.segment.network_input)",
            "seeing": "log(PSF FWHM of the detection band in pixels / seeing_reference), one "
            "value per image",
        },
        "bands": ["g", "r", "z"],
        "trained_on": {
            "fields": f"{config.n_train_fields} DECaLS g, r, z fields of {FIELD_SIZE}x"
            f"{FIELD_SIZE} at Burke et al.'s typical densities, galaxy mix "
            f"{dict(TRAINING_GALAXY_MIX)} (skysift.train.shred_data)",
            "samples": "every truth source with detection-band S/N >= 5 (stars, galaxies, "
            "clumps), cut within +-1 px of its position",
            "shred_fraction": summary["trained_fraction"],
            "output_prior": {
                "shred_fraction": summary["expected_fraction"],
                "from": f"the {config.n_val_fields} validation fields (the simulator's "
                "default galaxy mix)",
                "logit_shift": summary["logit_shift"],
            },
        },
        "training": {
            "command": training_command(config),
            "seed": config.seed,
            "config": config.to_dict(),
            "best_validation_loss": summary["best_val_loss"],
        },
        "metrics": metrics,
    }
