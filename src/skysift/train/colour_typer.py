"""Train the segmenter chain's colour typer (:mod:`skysift.colour_typer`).

Data: Burke et al.'s typical fields (:func:`skysift.train.segmenter_data.typical_field_configs`)
from a seed range of their own (:data:`SEED_OFFSET`, clear of every segmenter's, look's,
refiner's and shred classifier's fields): training, validation (the epoch) and held-out test
fields (the card's figures). The chain the typer follows (:attr:`ColourTyperTrainingConfig.
chain`: the detector, its looks, the shred classifier and the mask refiner) runs on them as
the ``Segmenter`` runs it; every instance its label map keeps is a sample, labelled by the
figure's own matching (mask IoU >= 0.5, one to one): galaxy, star, or false when it matches
no truth source. Detections of truth sources too faint for a mask are left out, as Burke et
al.'s figure counts them neither way.

Training: cross-entropy, Adam, mini-batches of :attr:`ColourTyperTrainingConfig.batch_size`
instances; the epoch with the lowest validation log loss is kept. The network is tiny; the
time goes into simulating the fields (about 25 minutes for the defaults on two processes) and
running the chain on them (about 15). Run: ``skysift train colour-typer --seed 0``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "ColourTyperTrainingConfig",
    "cached_instances",
    "finish_colour_typer",
    "instance_cache",
    "instance_samples",
    "instance_weights",
    "prepare_data",
    "train_colour_typer",
    "write_instance_cache",
]

#: The typer's fields start this far into each role's seeds.
SEED_OFFSET = 480_000
#: Images run through the chain at a time.
CHUNK = 32
#: Truth S/N bins of the card's figures.
SNR_BINS = ((20.0, 50.0), (50.0, 100.0), (100.0, math.inf))


@dataclasses.dataclass(frozen=True)
class ColourTyperTrainingConfig:
    """Everything that fixes a colour-typer training run."""

    name: str = "colour_typer"
    segmenter: str = "segmenter_psf_typical"
    second_look: tuple[str, ...] = ("second_look_reject", "second_look_reject_refined")
    star_fraction: float = 0.27
    shreds: str | None = "shred"
    mask_refiner: str | None = "mask_refiner"
    mask_light: bool = False
    #: read the light profile in apertures too (skysift.colour_typer.aperture_profile)
    aperture_profile: bool = False
    #: read this star/galaxy classifier's call too (skysift.colour_typer.stargalaxy_logits)
    stargalaxy: str | None = None
    #: the loss weight of the instances Burke et al.'s figure counts at S/N >= bright_snr
    #: (those matched to a truth source that bright, and the false ones) against 1 for the
    #: fainter matches, which the figure leaves neutral (docs/models.md, session 46)
    bright_weight: float = 1.0
    bright_snr: float = 20.0
    n_train_fields: int = 1024
    n_val_fields: int = 128
    n_test_fields: int = 128
    hidden: tuple[int, ...] = (64, 64)
    epochs: int = 60
    batch_size: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    workers: int = 2
    train_dir: str = "data/colour_typer_train"
    val_dir: str = "data/colour_typer_validation"
    test_dir: str = "data/colour_typer_test"
    run_dir: str = "runs/colour_typer"

    def __post_init__(self) -> None:
        from skysift.errors import InvalidParameterError

        if min(self.n_train_fields, self.n_val_fields, self.n_test_fields) < 1:
            raise InvalidParameterError("the colour typer needs at least one field of each role")
        if not 0 < self.star_fraction < 1:
            raise InvalidParameterError(
                f"star_fraction must be in (0, 1); got {self.star_fraction}"
            )
        if self.epochs < 1 or self.batch_size < 1 or not self.hidden:
            raise InvalidParameterError("epochs, batch_size and hidden must be positive")
        if not self.bright_weight > 0:
            raise InvalidParameterError(f"bright_weight must be positive; got {self.bright_weight}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def directory(self, role: str) -> str:
        return {"train": self.train_dir, "validation": self.val_dir, "test": self.test_dir}[role]

    def fields(self, role: str) -> int:
        return {
            "train": self.n_train_fields,
            "validation": self.n_val_fields,
            "test": self.n_test_fields,
        }[role]


ROLES = ("train", "validation", "test")


def field_configs(role: str, n: int):
    """The typer's ``n`` typical fields of ``role``."""
    from skysift.train.segmenter_data import typical_field_configs

    return typical_field_configs(role, n, seed_offset=SEED_OFFSET)


def prepare_data(config: ColourTyperTrainingConfig, *, progress: bool = True) -> None:
    """Simulate the fields of every role that are missing (resumable)."""
    from skysift.sim.dataset import write_role_datasets
    from skysift.train.segmenter_data import SegmenterSamples

    write_role_datasets(
        ((config.directory(role), role, config.fields(role)) for role in ROLES),
        field_configs,
        SegmenterSamples(),
        description="typical DECaLS fields for the colour typer ({role} seeds)",
        workers=config.workers,
        progress=progress,
        extra_fields=True,  # another run's --n-train-fields; only the named ones are read
    )


def chain_parts(config: ColourTyperTrainingConfig) -> tuple:
    """``(detector module, looks, shred classifier, mask refiner)`` of the chain."""
    from skysift.mask_refine import MaskRefiner
    from skysift.models.registry import load_model, model_location
    from skysift.second_look import SecondLook
    from skysift.shreds import ShredClassifier

    name, folder = model_location(config.segmenter)
    module, _ = load_model(name, directory=folder)
    looks = []
    for reference in config.second_look:
        look_name, look_folder = model_location(reference)
        look_module, card = load_model(look_name, directory=look_folder)
        looks.append(SecondLook(look_name, module=look_module, card=card))
    return (
        module,
        tuple(looks),
        None if config.shreds is None else ShredClassifier(config.shreds),
        None if config.mask_refiner is None else MaskRefiner(config.mask_refiner),
    )


def instance_samples(
    predictions: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    *,
    star_label: int,
    mask_light: bool = False,
    profile: bool = False,
    stargalaxy=None,
) -> dict[str, np.ndarray]:
    """The typer's inputs and labels for the chain's ``predictions`` on ``samples``.

    Each prediction is painted as the ``Segmenter``'s label map paints it
    (:func:`skysift.evaluate.segmentation.as_catalog`); its kept instances are matched to the
    truth by the figure's own rule (``star_label``: the 1-based label of ``star`` in the
    detector's classes); ``mask_light`` adds :data:`skysift.colour_typer.MASK_LIGHT` to the
    features, ``profile`` the :func:`skysift.colour_typer.aperture_profile`. Returns
    ``features (n, k)``, ``label (n,)`` (index into :data:`skysift.colour_typer.CLASSES`),
    ``snr (n,)`` (the matched truth's, 0 for false) and ``field (n,)`` (the sample's seed).
    """
    from skysift.colour_typer import CLASSES, prediction_features
    from skysift.evaluate.segmentation import as_catalog, figure_matches
    from skysift.train.segmenter import sample_sky_subtracted, sample_targets

    parts: dict[str, list[np.ndarray]] = {"features": [], "label": [], "snr": [], "field": []}
    for prediction, sample in zip(predictions, samples, strict=True):
        n = len(np.asarray(prediction["scores"]))
        if not n:
            continue
        catalog = as_catalog(prediction | {"instance": np.arange(n)})
        target = sample_targets(sample["labels"], sample["ids"], sample["classes"])
        (matched,), (neutral,) = figure_matches([catalog], [target], unmasked=[sample["unmasked"]])
        keep = ~np.asarray(neutral, dtype=bool)
        if not keep.any():
            continue
        masks = np.asarray(prediction["masks"])[:, 0] >= 0.5
        image, rms = sample_sky_subtracted(sample)
        features = prediction_features(
            prediction,
            [np.nonzero(mask) for mask in masks],
            image=image,
            rms=rms,
            psf_fwhm=sample["psf_fwhm"],
            with_mask_light=mask_light,
            with_profile=profile,
            stargalaxy=stargalaxy,
        )
        truth_labels = np.asarray(target["labels"])
        # sample_targets keeps the instances with pixels in the label map, in order
        kept = np.flatnonzero(np.isin(sample["ids"], np.unique(sample["labels"])))
        index = np.asarray(matched)[keep]
        found = index >= 0
        is_star = np.zeros(index.size, dtype=bool)
        is_star[found] = truth_labels[index[found]] == star_label
        label = np.where(
            found,
            np.where(is_star, CLASSES.index("star"), CLASSES.index("galaxy")),
            CLASSES.index("false"),
        )
        truth_snr = np.zeros(index.size)
        truth_snr[found] = np.asarray(sample["snr"], dtype=float)[kept[index[found]]]
        parts["features"].append(features[np.asarray(catalog["instance"])[keep]])
        parts["label"].append(label.astype(np.int64))
        parts["snr"].append(truth_snr)
        parts["field"].append(np.full(index.size, int(sample["seed"])))
    if not parts["features"]:
        raise ValueError("no chain instances to learn from")
    return {key: np.concatenate(value) for key, value in parts.items()}


def instance_cache(config: ColourTyperTrainingConfig, role: str) -> tuple[Path, dict[str, Any]]:
    """Where :func:`cached_instances` keeps ``role``'s instances (one file per feature set),
    and the settings that made them: the chain, the feature sets, and the fields."""
    suffix = (
        ("_mask_light" if config.mask_light else "")
        + ("_profile" if config.aperture_profile else "")
        + (f"_{config.stargalaxy}" if config.stargalaxy else "")
    )
    keys = ("segmenter", "second_look", "star_fraction", "shreds", "mask_refiner")
    keys += ("mask_light", "aperture_profile", "stargalaxy")
    settings = {key: getattr(config, key) for key in keys}
    seeds = [c.seed for c in field_configs(role, config.fields(role))]
    settings |= {"role": role, "fields": len(seeds), "first_seed": seeds[0]}
    return Path(config.run_dir) / f"instances_{role}{suffix}.npz", settings


def write_instance_cache(
    config: ColourTyperTrainingConfig, role: str, data: dict[str, np.ndarray]
) -> Path:
    """Keep ``role``'s instances (:func:`instance_samples`' arrays) where
    :func:`cached_instances` finds them, with the settings that made them."""
    from skysift.train.checkpoints import write_cache

    return write_cache(*instance_cache(config, role), data)


def cached_instances(
    config: ColourTyperTrainingConfig, role: str, *, progress: bool = True
) -> dict[str, np.ndarray]:
    """:func:`instance_samples` of the chain on ``role``'s fields, cached in ``run_dir``
    (:func:`instance_cache`). Only the fields the config names are read, whatever else the
    data folder holds. A cache made with other settings (another ``--n-train-fields``, chain
    or feature set in the same run folder) is refused by name, never read as this run's."""
    import torch

    from skysift.morphology import GalaxyTyper
    from skysift.progress import progress_iter
    from skysift.train.checkpoints import read_cache
    from skysift.train.segmenter import named_images, network_images, predict, refine

    cached = read_cache(*instance_cache(config, role))
    if cached is not None:
        return cached
    torch.set_num_threads(config.threads)
    module, looks, shreds, refiner = chain_parts(config)
    classes = module.skysift_config.classes
    stargalaxy = None
    if config.stargalaxy:
        from skysift.stargalaxy import StarGalaxyClassifier

        stargalaxy = StarGalaxyClassifier(config.stargalaxy, calibrated=False)
    samples = named_images(config.directory(role), field_configs(role, config.fields(role)))
    typer = GalaxyTyper()
    parts = []
    chunks = range(0, len(samples), CHUNK)
    for start in progress_iter(chunks, f"chain on the {role} fields", enabled=progress):
        chunk = samples[start : start + CHUNK]
        refined = refine(
            predict(module, network_images(module, chunk)),
            chunk,
            classes,
            galaxy_typer=typer,
            second_look=looks,
            star_fraction=config.star_fraction,
            shreds=shreds,
            mask_refiner=refiner,
        )
        star_label = classes.index("star") + 1
        parts.append(
            instance_samples(
                refined,
                chunk,
                star_label=star_label,
                mask_light=config.mask_light,
                profile=config.aperture_profile,
                stargalaxy=stargalaxy,
            )
        )
    data = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    write_instance_cache(config, role, data)
    return data


def _batch_loss(logits, labels, weights=None):
    """Cross-entropy of a batch, its instances weighted by ``weights`` when given (None: the
    plain mean, bit for bit the shipped typer's training)."""
    import torch

    if weights is None:
        return torch.nn.functional.cross_entropy(logits, labels)
    losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    return (losses * weights).sum() / weights.sum()


def _log_loss(
    module, features: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """Mean log loss, weighted by ``weights`` when given."""
    import torch

    with torch.no_grad():
        logits = module(torch.from_numpy(features))
        weights = None if weights is None else torch.from_numpy(weights.astype(np.float32))
        return float(_batch_loss(logits, torch.from_numpy(labels), weights))


def instance_weights(data: dict[str, np.ndarray], config: ColourTyperTrainingConfig) -> np.ndarray:
    """Each instance's loss weight: ``bright_weight`` for a false instance or a match to a
    truth source of S/N >= ``bright_snr``, 1 for the others."""
    from skysift.colour_typer import CLASSES

    counted = (data["label"] == CLASSES.index("false")) | (data["snr"] >= config.bright_snr)
    return np.where(counted, config.bright_weight, 1.0)


def train_colour_typer(config: ColourTyperTrainingConfig, *, progress: bool = True) -> Path:
    """Train the typer on the training fields' instances; keep the epoch of the lowest
    validation log loss. Returns the best weights' path (``run_dir/best.safetensors``)."""
    import torch
    from safetensors.torch import save_file

    from skysift.colour_typer import feature_names
    from skysift.models.colour_typer import ColourTyperConfig, ColourTyperNet
    from skysift.progress import progress_iter

    train = cached_instances(config, "train", progress=progress)
    val = cached_instances(config, "validation", progress=progress)
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    architecture = ColourTyperConfig(
        features=train["features"].shape[1], hidden=tuple(config.hidden)
    )
    module = ColourTyperNet(architecture)
    features = torch.from_numpy(train["features"])
    labels = torch.from_numpy(train["label"])
    weighted = config.bright_weight != 1.0  # 1: the plain mean, as the shipped typer learned
    weights = torch.from_numpy(instance_weights(train, config).astype(np.float32))
    val_weights = instance_weights(val, config) if weighted else None
    module.standardize_with(features)
    optimizer = torch.optim.Adam(
        module.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    generator = torch.Generator().manual_seed(config.seed)
    best, history = math.inf, []
    run = Path(config.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for epoch in progress_iter(range(config.epochs), "colour typer epochs", enabled=progress):
        module.train()
        order = torch.randperm(len(labels), generator=generator)
        for begin in range(0, len(order), config.batch_size):
            batch = order[begin : begin + config.batch_size]
            loss = _batch_loss(
                module(features[batch]), labels[batch], weights[batch] if weighted else None
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        module.eval()
        val_loss = _log_loss(module, val["features"], val["label"], val_weights)
        history.append({"epoch": epoch + 1, "val_loss": val_loss})
        if val_loss < best:
            best = val_loss
            save_file(
                {k: v.contiguous() for k, v in module.state_dict().items()},
                str(run / "best.safetensors"),
            )
    summary = {
        "architecture": architecture.to_dict(),
        "features": list(
            feature_names(
                _bands_of(train["features"], config),
                mask_light=config.mask_light,
                profile=config.aperture_profile,
                stargalaxy=bool(config.stargalaxy),
            )
        ),
        "best_val_loss": best,
        "history": history,
        "n_train": len(labels),
        "n_val": len(val["label"]),
        "seconds": time.perf_counter() - started,
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return run / "best.safetensors"


def _bands_of(features: np.ndarray, config: ColourTyperTrainingConfig) -> int:
    """Bands of the images whose instances gave ``features`` (8 chain outputs, a S/N per
    band, a colour per band but the reference, the mask's light when it is read, and a S/N
    per band and profile radius when those are)."""
    from skysift.colour_typer import MASK_LIGHT, PROFILE_FWHM, STARGALAXY

    per_band = 2 + (len(PROFILE_FWHM) if config.aperture_profile else 0)
    extra = (len(MASK_LIGHT) if config.mask_light else 0) + (
        len(STARGALAXY) if config.stargalaxy else 0
    )
    return (features.shape[1] - 7 - extra) // per_band


def _figures(probabilities: np.ndarray, data: dict[str, np.ndarray]) -> dict[str, Any]:
    """Log loss, and per truth S/N bin the share of matched stars and galaxies given their
    own group (star when P(star) >= P(galaxy))."""
    from skysift.colour_typer import CLASSES

    galaxy, star = CLASSES.index("galaxy"), CLASSES.index("star")
    chosen = np.clip(probabilities[np.arange(len(data["label"])), data["label"]], 1e-7, 1.0)
    says_star = probabilities[:, star] >= probabilities[:, galaxy]
    out: dict[str, Any] = {"log_loss": float(-np.mean(np.log(chosen))), "bins": []}
    for low, high in SNR_BINS:
        in_bin = (data["snr"] >= low) & (data["snr"] < high)
        row: dict[str, Any] = {"snr_min": low, "snr_max": None if math.isinf(high) else high}
        for name, k, wanted in (("stars", star, True), ("galaxies", galaxy, False)):
            group = in_bin & (data["label"] == k)
            row[name] = {
                "n": int(group.sum()),
                "right": float(np.mean(says_star[group] == wanted)) if group.any() else None,
            }
        out["bins"].append(row)
    return out


def chain_probabilities(features: np.ndarray) -> np.ndarray:
    """The chain's own ``(n, 3)`` probabilities (galaxy, star, false) from the typer's inputs:
    the looks' where they decided, else the detector's (no false)."""
    from skysift.colour_typer import FEATURES

    star = features[:, FEATURES.index("look_p_star")].astype(float)
    false = features[:, FEATURES.index("look_p_false")].astype(float)
    return np.column_stack([np.clip(1 - star - false, 0, 1), star, false])


def finish_colour_typer(
    config: ColourTyperTrainingConfig,
    best_weights: Path,
    *,
    out_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Measure the best weights on the held-out test fields' instances, next to the chain's
    own call, and write weights + card (fp16 when no probability moves by 1e-3)."""
    import torch
    from safetensors.torch import load_file

    from skysift.models.colour_typer import ColourTyperConfig, ColourTyperNet
    from skysift.models.registry import save_model, weights_dir
    from skysift.sim.presets import get_preset

    summary = json.loads(Path(config.run_dir, "summary.json").read_text())
    architecture = ColourTyperConfig.from_dict(summary["architecture"])
    model = ColourTyperNet(architecture)
    model.load_state_dict(load_file(str(best_weights)))
    model.eval()
    half = ColourTyperNet(architecture)
    half.load_state_dict({k: v.half().to(v.dtype) for k, v in model.state_dict().items()})
    half.eval()
    test = cached_instances(config, "test", progress=progress)
    with torch.no_grad():
        inputs = torch.from_numpy(test["features"])
        full_p = torch.softmax(model(inputs), dim=1).numpy()
        half_p = torch.softmax(half(inputs), dim=1).numpy()
    moved = float(np.abs(full_p - half_p).max(initial=0.0))
    fp16 = moved < 1e-3
    decals = get_preset("decals")
    card = {
        "name": config.name,
        "task": "star / galaxy / false of each segmenter instance from the chain's outputs and "
        "its aperture colours (skysift.colour_typer)",
        "classes": ["galaxy", "star", "false"],
        "architecture": {"kind": "colour_typer", "config": summary["architecture"]},
        "parameters": int(sum(q.numel() for q in model.parameters())),
        "inputs": {
            "features": summary["features"],
            "bands": len(decals.band_names),
            "band_names": list(decals.band_names),
            "zero_points": [round(decals.zero_point_adu(b), 4) for b in decals.band_names],
            "zero_points_meaning": "AB magnitude of one image unit (ADU) per band in the "
            "training fields; images with others are scaled to them "
            "(SegmentConfig.zero_points)",
            "photometry": "circular aperture of 0.8 PSF FWHM radius at the mask's centroid on "
            "each band less SEP's background; noise from the background's RMS",
            "mask_light": config.mask_light,
            "aperture_profile": config.aperture_profile,
            "stargalaxy": config.stargalaxy,
        },
        "chain": {
            "segmenter": config.segmenter,
            "second_look": list(config.second_look),
            "star_fraction": config.star_fraction,
            "shreds": config.shreds,
            "mask_refiner": config.mask_refiner,
        },
        "trained_on": {
            "fields": f"{config.n_train_fields} training, {config.n_val_fields} validation and "
            f"{config.n_test_fields} test typical DECaLS g, r, z fields of 256x256 (Burke et "
            f"al.'s densities; skysift.train.colour_typer.SEED_OFFSET = {SEED_OFFSET})",
            "samples": f"{summary['n_train']} training and {summary['n_val']} validation "
            "instances of the chain's label maps, labelled by the figure's matching (mask "
            "IoU >= 0.5): galaxy, star or false",
        },
        "training": {
            "command": training_command(config),
            "seed": config.seed,
            "config": config.to_dict(),
            "best_validation_loss": summary["best_val_loss"],
            "loss_weights": f"{config.bright_weight:g} for false instances and matches to "
            f"truth of S/N >= {config.bright_snr:g}, 1 for fainter matches",
            "seconds": summary["seconds"],
        },
        "metrics": {
            "test_instances": len(test["label"]),
            "colour_typer": _figures(half_p if fp16 else full_p, test),
            "chain_without_it": _figures(chain_probabilities(test["features"]), test),
            "fp16_largest_probability_change": moved,
        },
    }
    with torch.no_grad():
        return save_model(half if fp16 else model, card, out_dir or weights_dir(), fp16=fp16)


def training_command(config: ColourTyperTrainingConfig) -> str:
    """The command that reproduces a run of ``config``."""
    defaults = ColourTyperTrainingConfig()
    command = f"skysift train colour-typer --seed {config.seed}"
    if config.n_train_fields != defaults.n_train_fields:
        command += f" --n-train-fields {config.n_train_fields}"
    if config.mask_light:
        command += " --mask-light"
    if config.aperture_profile:
        command += " --aperture-profile"
    if config.stargalaxy:
        command += f" --stargalaxy {config.stargalaxy}"
    if config.bright_weight != defaults.bright_weight:
        command += f" --bright-weight {config.bright_weight:g}"
    if config.epochs != defaults.epochs:
        command += f" --epochs {config.epochs}"
    if config.second_look != defaults.second_look:
        command += "".join(f" --second-look {look}" for look in config.second_look)
    if config.name != defaults.name:
        command += f" --name {config.name}"
    if config.threads != defaults.threads:
        command += f" --threads {config.threads}"
    return command
