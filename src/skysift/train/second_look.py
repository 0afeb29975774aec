"""Train the segmenter's star/galaxy second look (:mod:`skysift.second_look`).

The training stamps are the shipped segmenter's own catalog instances (detections, re-typed and
painted as the ``Segmenter`` delivers them) that match a truth source with mask IoU >= 0.5,
labelled by the truth's group: the second look learns to correct the mistakes this segmenter
makes, on the masks it draws. They come from the segmenter's training-seed images (the first
``n_images`` of its SDSS/DECaLS training set and of its typical-field set); the epoch is chosen
by the log loss on its validation images; the card's figures are measured on its held-out test
images and typical test fields.

Run: ``skysift train second-look --seed 0``. The stamps are cached in ``run_dir`` (building
them runs the segmenter over 1,800 images, ~45 min); training then takes minutes and starts afresh
when interrupted.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "SecondLookTrainingConfig",
    "finish_second_look",
    "instance_stamps",
    "mask_channels",
    "train_second_look",
    "training_star_fraction",
]

#: Learning-rate schedules of the training (:attr:`SecondLookTrainingConfig.schedule`).
SCHEDULES = ("constant", "cosine")

#: Images run through the segmenter at a time (its masks take ~15 MB per image).
CHUNK = 32

#: Segmenter training images cut into stamps by default: all 1,500 of its SDSS/DECaLS set and
#: the 300 typical fields. Session 20 measured 600 + 300 against this on validation: the log
#: loss fell from 0.224 to 0.189 (binary) and 0.437 to 0.398 (reject).
DEFAULT_N_IMAGES = (1500, 300)
#: Filters of each of the look's three convolutions: ASID-C's image branch.
DEFAULT_FILTERS = 32


def default_second_look_name(*, reject: bool = False, cutout: str = "native") -> str:
    """The name a second look is written under unless told otherwise: ``second_look`` or,
    with ``reject``, ``second_look_reject``; another ``cutout`` than ``native`` adds
    ``_<cutout>``."""
    name = "second_look_reject" if reject else "second_look"
    return name if cutout == "native" else f"{name}_{cutout}"


@dataclasses.dataclass(frozen=True)
class SecondLookTrainingConfig:
    """Everything that fixes a second-look training run."""

    name: str = "second_look"
    segmenter: str = "segmenter_psf"
    galaxy_types: str | None = "morphology"
    train_dirs: tuple[str, ...] = ("data/segmenter_train", "data/segmenter_train_typical")
    n_images: tuple[int, ...] = DEFAULT_N_IMAGES
    val_dir: str = "data/segmenter_val"
    run_dir: str = "runs/second_look"
    reject: bool = False
    #: how stamps are cut: native, zoomed or both (skysift.second_look.look_inputs)
    cutout: str = "native"
    #: validation log loss still fell at 20 and was lowest at 39 of 40 (0.189, 1,800 images)
    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    #: "constant", or "cosine": annealed to zero over the epochs (one step per epoch)
    schedule: str = "constant"
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 2
    #: the segmenter's images were simulated with clumps' pixels in their parent's mask
    #: (:class:`~skysift.sim.field.FieldConfig`); the held-out test images are simulated so too
    clumps_in_footprints: bool = False
    #: the segmenter's images were simulated with truth masks by Burke et al.'s rule
    #: (``skysift train segmenter --burke-masks``); the held-out test images are simulated so too
    burke_masks: bool = False
    #: the order the stamps' catalogs are painted in (skysift.evaluate.segmentation.as_catalog):
    #: "scores", the galaxy-typed scores, is how the shipped looks' stamps were cut (the
    #: Segmenter's paint order before session 23), kept so that their commands give their
    #: bytes again; "detection_scores" is the Segmenter's order since session 23
    paint_by: str = "scores"
    #: the segmenter's views fused, as ``SegmentConfig(augment=)`` (skysift.segment_augment):
    #: the look then learns the mistakes of the augmented detector
    augment: str | None = None
    #: a mask refiner (skysift.mask_refine) that draws the small instances' masks again
    #: before they are cut: the look then sees the masks the refiner draws, and the
    #: ``Segmenter`` refines before it looks (its card's ``mask_refiner``)
    mask_refiner: str | None = None
    #: filters of each of the image branch's three convolutions (session 40 measured 64)
    filters: int = DEFAULT_FILTERS
    #: each stamp has the neighbours' channel: the other detections' masks
    #: (skysift.second_look.instance_cutouts), so that light inside a neighbour's mask is
    #: not read as the instance's own
    neighbours: bool = False
    #: each training stamp's mask channel is eroded or dilated by a whole number of pixels
    #: drawn from -mask_jitter..mask_jitter (:func:`skysift.train.mask_refiner.jittered_masks`),
    #: so that the look reads a source's extent from its pixels, not from the size of the
    #: mask it is shown (docs/models.md, session 46); validation stamps are left as cut
    mask_jitter: int = 0

    @classmethod
    def named(
        cls, *, reject: bool = False, cutout: str = "native", **options
    ) -> SecondLookTrainingConfig:
        """The config of ``second_look`` (star or galaxy) or, with ``reject``, of
        ``second_look_reject`` (star, galaxy or false), with their own run directories;
        another ``cutout`` than ``native`` adds ``_<cutout>`` to the name."""
        name = options.pop("name", None) or default_second_look_name(reject=reject, cutout=cutout)
        return cls(
            **{"name": name, "run_dir": f"runs/{name}", "reject": reject, "cutout": cutout}
            | options
        )

    def __post_init__(self) -> None:
        if len(self.train_dirs) != len(self.n_images):
            raise ValueError("train_dirs and n_images must have the same length")
        from skysift.errors import InvalidParameterError
        from skysift.second_look import CUTOUT_KINDS

        if self.filters < 1:
            raise InvalidParameterError(f"filters must be >= 1; got {self.filters}")
        if self.mask_jitter < 0:
            raise InvalidParameterError(f"mask_jitter must be >= 0; got {self.mask_jitter}")
        if self.schedule not in SCHEDULES:
            raise InvalidParameterError(
                f"schedule must be one of {SCHEDULES}; got {self.schedule!r}"
            )
        if self.cutout not in CUTOUT_KINDS:
            raise InvalidParameterError(
                f"cutout must be one of {CUTOUT_KINDS}; got {self.cutout!r}"
            )
        from skysift.augmentation import check_augment
        from skysift.evaluate.segmentation import PAINT_ORDERS

        check_augment(self.augment)
        if self.paint_by not in PAINT_ORDERS:
            raise InvalidParameterError(
                f"paint_by must be one of {PAINT_ORDERS}; got {self.paint_by!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return data | {"train_dirs": list(self.train_dirs), "n_images": list(self.n_images)}


def _refiners(config: SecondLookTrainingConfig):
    from skysift.models.registry import load_model, model_location
    from skysift.morphology import GalaxyTyper

    name, folder = model_location(config.segmenter)
    segmenter, card = load_model(name, directory=folder)
    typer = GalaxyTyper(config.galaxy_types) if config.galaxy_types else None
    return segmenter, card, typer


def _mask_refiner(config: SecondLookTrainingConfig):
    """The :class:`~skysift.mask_refine.MaskRefiner` the stamps' masks are drawn by, or None."""
    if config.mask_refiner is None:
        return None
    from skysift.mask_refine import MaskRefiner

    return MaskRefiner(config.mask_refiner)


def instance_stamps(
    catalogs: list[dict[str, Any]],
    samples: list[dict[str, Any]],
    *,
    star_label: int,
    cutout: str = "native",
    coverages=None,
) -> dict[str, np.ndarray]:
    """The second look's inputs for catalog instances, and their truth classes.

    Parameters
    ----------
    catalogs : list of dict
        The segmenter's catalog of each sample (:func:`skysift.train.segmenter.
        segmenter_catalogs`); matched by their painted ``masks``, cut with
        ``detector_masks`` (the detector's own, which the second look sees in the
        ``Segmenter``) when they have them.
    samples : list of dict
        Samples of :func:`skysift.train.segmenter.load_images`, with ``psf_fwhm``.
    star_label : int
        The 1-based label of ``star`` in the segmenter's classes.
    cutout : {"native", "zoomed", "both"}
        How each stamp is cut (:func:`skysift.second_look.look_inputs`).
    coverages : list of numpy.ndarray, optional
        Per sample, the :func:`~skysift.second_look.mask_coverage` of every detection the
        look is shown with the catalog's: each stamp then has the neighbours' channel.

    Returns
    -------
    dict
        ``cutouts (n, bands + 1, 32, 32)``, ``psf_fwhm (n,)`` (in the cutout's pixels: the
        image's FWHM over the zoom), ``zoom (n,)`` and ``label (n,)``: the class
        index in :data:`CLASSES` (galaxy, star: the group of the truth source the instance
        matches, mask IoU >= 0.5, one to one; false: it matches none). Detections of truth
        sources without a mask, which Burke et al.'s figure counts neither way, are left out.
    """
    from skysift.evaluate.segmentation import figure_matches
    from skysift.second_look import instance_zooms, look_inputs
    from skysift.train.segmenter import sample_targets

    targets = [sample_targets(s["labels"], s["ids"], s["classes"]) for s in samples]
    truth_index, neutral = figure_matches(
        catalogs, targets, unmasked=[s["unmasked"] for s in samples]
    )
    parts: dict[str, list[np.ndarray]] = {k: [] for k in _STAMP_ARRAYS}
    if coverages is None:
        coverages = [None] * len(catalogs)
    for catalog, sample, target, index, skip, coverage in zip(
        catalogs, samples, targets, truth_index, neutral, coverages, strict=True
    ):
        keep = ~np.asarray(skip, dtype=bool)
        if not keep.any():
            continue
        masks = np.asarray(catalog.get("detector_masks", catalog["masks"]))[keep, 0] >= 0.5
        true_star = np.asarray(target["labels"]) == star_label
        matched = index[keep] >= 0
        is_star = matched & true_star[np.maximum(index[keep], 0)]
        label = np.where(matched, np.where(is_star, 1, 0), 2)
        cutouts, fwhm = look_inputs(
            sample["image"],
            masks,
            psf_fwhm=float(sample["psf_fwhm"]),
            cutout=cutout,
            coverage=coverage,
        )
        parts["cutouts"].append(cutouts)
        parts["psf_fwhm"].append(fwhm)
        parts["zoom"].append(instance_zooms(masks))
        parts["label"].append(label.astype(np.int64))
    if not parts["cutouts"]:
        raise ValueError("no catalog instances to cut stamps from")
    return {key: np.concatenate(value) for key, value in parts.items()}


#: The second look's classes, in the order of their labels in the stamps.
CLASSES = ("galaxy", "star", "false")


def _catalog_stamps(
    segmenter,
    typer,
    directory: str,
    seeds=None,
    *,
    cutout: str,
    paint_by: str,
    augment: str | None = None,
    mask_refiner=None,
    neighbours: bool = False,
) -> dict[str, np.ndarray]:
    from skysift.evaluate.segmentation import as_catalog
    from skysift.mask_refine import refined_masks
    from skysift.second_look import mask_coverage
    from skysift.train.segmenter import load_images, refined_predictions

    samples = load_images(directory, seeds=seeds)
    catalogs, coverages = [], []
    predictions = refined_predictions(segmenter, samples, galaxy_typer=typer, augment=augment)
    for prediction, sample in zip(predictions, samples, strict=True):
        if mask_refiner is not None:  # the masks the look sees in a chain with the refiner
            prediction = refined_masks(
                prediction, sample["image"], mask_refiner, psf_fwhm=float(sample["psf_fwhm"])
            )
        # the instances the label map keeps, each cut with the mask the look is shown (the
        # detector's own, or its refiner's): the look runs before they are painted
        # (Segmenter, relook)
        catalog = as_catalog(
            prediction | {"detector_masks": prediction["masks"]}, paint_by=paint_by
        )
        catalogs.append(catalog)
        if neighbours:  # relook shows a look every detection, painted or not
            shown = np.asarray(prediction["masks"])[:, 0] >= 0.5
            coverages.append(mask_coverage(shown, shown.shape[1:]))
    star = segmenter.skysift_config.classes.index("star") + 1
    return instance_stamps(
        catalogs,
        samples,
        star_label=star,
        cutout=cutout,
        coverages=coverages if neighbours else None,
    )


def _dataset_seeds(directory: str) -> list[int]:
    manifest = json.loads(Path(directory, "manifest.json").read_text())
    return sorted(entry["seed"] for entry in manifest["shards"])


def build_stamps(config: SecondLookTrainingConfig, *, progress: bool = True) -> Path:
    """Cut (or reuse) the training and validation stamps; returns the cache file."""
    from skysift.errors import InvalidParameterError
    from skysift.io import atomic_write
    from skysift.progress import progress_iter

    run = Path(config.run_dir)
    run.mkdir(parents=True, exist_ok=True)
    cache = run / "stamps.npz"
    settings = json.dumps(_stamp_settings(config), sort_keys=True)
    if cache.exists():
        with np.load(cache) as stored:
            if str(stored["settings"]) == settings:
                return cache
        raise InvalidParameterError(
            f"{cache}: cut with other settings; delete it or choose another run_dir"
        )
    segmenter, _, typer = _refiners(config)
    chunks = []
    for directory, n in zip(config.train_dirs, config.n_images, strict=True):
        seeds = _dataset_seeds(directory)
        if len(seeds) < n:
            raise InvalidParameterError(f"{directory}: holds {len(seeds)} images, {n} asked for")
        chunks += [(directory, seeds[s : min(s + CHUNK, n)]) for s in range(0, n, CHUNK)]
    cut = {
        "cutout": config.cutout,
        "paint_by": config.paint_by,
        "augment": config.augment,
        "mask_refiner": _mask_refiner(config),
        "neighbours": config.neighbours,
    }
    parts = [
        _catalog_stamps(segmenter, typer, directory, seeds, **cut)
        for directory, seeds in progress_iter(chunks, "cutting stamps", enabled=progress)
    ]
    train = {k: np.concatenate([p[k] for p in parts]) for k in _STAMP_ARRAYS}
    val = _catalog_stamps(segmenter, typer, config.val_dir, **cut)
    with atomic_write(cache) as tmp, open(tmp, "wb") as handle:
        np.savez_compressed(
            handle,
            settings=np.array(settings),
            **{f"train_{k}": v for k, v in train.items()},
            **{f"val_{k}": val[k] for k in _STAMP_ARRAYS},
        )
    return cache


_STAMP_SETTINGS = ("segmenter", "galaxy_types", "train_dirs", "n_images", "val_dir", "cutout")


def _stamp_settings(config: SecondLookTrainingConfig) -> dict[str, Any]:
    """What fixes a run's stamps (``paint_by`` and ``augment`` only when not their old
    defaults, so that the caches cut before they existed stay valid)."""
    settings = {k: config.to_dict()[k] for k in _STAMP_SETTINGS}
    if config.paint_by != "scores":
        settings["paint_by"] = config.paint_by
    if config.augment is not None:
        settings["augment"] = config.augment
    if config.mask_refiner is not None:
        settings["mask_refiner"] = config.mask_refiner
    if config.neighbours:
        settings["neighbours"] = True
    return settings


_STAMP_ARRAYS = ("cutouts", "psf_fwhm", "zoom", "label")


def architecture_for(
    bands: int,
    *,
    reject: bool = False,
    cutout: str = "native",
    filters: int = DEFAULT_FILTERS,
    neighbours: bool = False,
):
    """The second look's network: ASID-C's image branch (three convolutions of ``filters``)
    on ``bands`` + 1 channels (+ 2 with the ``neighbours``' channel; twice that for
    ``cutout="both"``), a context branch of 32 on the seeing alone, and one hidden layer of
    64; one output (P(star)), or with ``reject`` three (galaxy, star, false)."""
    from skysift.models.stargalaxy_inputs import StarGalaxyConfig
    from skysift.second_look import cutout_views

    return StarGalaxyConfig(
        in_channels=(bands + 1 + neighbours) * cutout_views(cutout),
        outputs=len(CLASSES) if reject else 1,
        filters=filters,
        position_input=False,
        seeing_input=True,
        position_widths=(32,),
        head_widths=(64,),
    )


def _architecture(config: SecondLookTrainingConfig, cutouts: np.ndarray):
    from skysift.second_look import cutout_views

    bands = cutouts.shape[1] // cutout_views(config.cutout) - 1 - config.neighbours
    return architecture_for(
        bands,
        reject=config.reject,
        cutout=config.cutout,
        filters=config.filters,
        neighbours=config.neighbours,
    )


def _stamps(config: SecondLookTrainingConfig, progress: bool) -> dict[str, np.ndarray]:
    """The cached stamps this run trains on: without ``reject`` the matched ones only."""
    with np.load(build_stamps(config, progress=progress)) as stored:
        data = {k: stored[k] for k in stored.files if k != "settings"}
    if not config.reject:
        for role in ("train", "val"):
            keep = data[f"{role}_label"] < 2
            for key in _STAMP_ARRAYS:
                data[f"{role}_{key}"] = data[f"{role}_{key}"][keep]
    return data


def _context(architecture, data: dict[str, np.ndarray], role: str) -> np.ndarray:
    fwhm = data[f"{role}_psf_fwhm"]
    return architecture.context(np.zeros((len(fwhm), 2)), seeing_fwhm=fwhm)


def classes_of(config: SecondLookTrainingConfig) -> tuple[str, ...]:
    """The classes of the network ``config`` trains, in the order of its probabilities."""
    from skysift.second_look import BINARY_CLASSES

    return CLASSES if config.reject else BINARY_CLASSES


def training_star_fraction(labels: np.ndarray) -> float:
    """Stars among the star and galaxy stamps (labels of :data:`CLASSES`): the prior the
    look learned, which :func:`skysift.second_look.with_star_fraction` re-weights."""
    labels = np.asarray(labels)
    stars, galaxies = int((labels == 1).sum()), int((labels == 0).sum())
    return round(stars / (stars + galaxies), 4)


def _log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log probability of the true class (floored at 1e-6)."""
    chosen = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(chosen, 1e-6))))


def train_second_look(config: SecondLookTrainingConfig, *, progress: bool = True) -> Path:
    """Train on the cached stamps; returns the path of the best weights (safetensors)."""
    import torch

    from skysift.models.stargalaxy import StarGalaxyNet
    from skysift.progress import progress_iter
    from skysift.second_look import predict_probabilities
    from skysift.train.checkpoints import append_log, save_weights

    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    data = _stamps(config, progress)
    architecture = _architecture(config, data["train_cutouts"])
    network = StarGalaxyNet(architecture)
    context, val_context = (
        _context(architecture, data, "train"),
        _context(architecture, data, "val"),
    )
    labels = torch.from_numpy(data["train_label"])
    if config.reject:
        loss_fn = torch.nn.CrossEntropyLoss()
    else:
        labels = labels.float()
        loss_fn = torch.nn.BCEWithLogitsLoss()
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    annealing = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
        if config.schedule == "cosine"
        else None
    )
    run = Path(config.run_dir)
    log_path = run / "log.jsonl"
    log_path.unlink(missing_ok=True)
    best = np.inf
    for epoch in progress_iter(range(config.epochs), "second-look epochs", enabled=progress):
        started = time.time()
        network.train()
        order = rng.permutation(len(labels))
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            cutouts = data["train_cutouts"][batch]
            if rng.random() < 0.5:  # flips and quarter turns: the sky has no orientation
                cutouts = cutouts[..., ::-1]
            cutouts = np.rot90(cutouts, k=int(rng.integers(4)), axes=(2, 3))
            batch_cutouts = torch.from_numpy(np.ascontiguousarray(cutouts))
            if config.mask_jitter:
                batch_cutouts = _with_jittered_masks(rng, batch_cutouts, config)
            logits = network(batch_cutouts, torch.from_numpy(context[batch]))
            loss = loss_fn(logits, labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        learning_rate = optimizer.param_groups[0]["lr"]
        if annealing is not None:
            annealing.step()
        p = predict_probabilities(network, data["val_cutouts"], val_context)
        value = _log_loss(p, data["val_label"])
        append_log(
            log_path,
            {
                "epoch": epoch + 1,
                "learning_rate": learning_rate,
                "validation_log_loss": value,
                "seconds": time.time() - started,
            },
        )
        if value < best:
            best = value
            save_weights(network, run / "best.safetensors")
    return run / "best.safetensors"


def mask_channels(channels: int, config: SecondLookTrainingConfig) -> list[int]:
    """Indices of the instance's mask channel in each view of a stamp of ``channels``
    channels (:func:`skysift.second_look.look_inputs`: per view the bands, the mask, and the
    neighbours' channel when the look has one)."""
    from skysift.second_look import cutout_views

    views = cutout_views(config.cutout)
    width = channels // views
    bands = width - 1 - int(config.neighbours)
    return [view * width + bands for view in range(views)]


def _with_jittered_masks(rng: np.random.Generator, cutouts, config: SecondLookTrainingConfig):
    """``cutouts`` (a torch batch) with each view's mask channel jittered
    (:attr:`SecondLookTrainingConfig.mask_jitter`)."""
    from skysift.train.mask_refiner import jittered_masks

    for channel in mask_channels(cutouts.shape[1], config):
        cutouts = jittered_masks(rng, cutouts, channel=channel, jitter=config.mask_jitter)
    return cutouts


#: What a card says the look decides (``relook``'s rule; the held-out figures follow it).
DECIDES = (
    "the instances its 32-px cutout holds whole; a larger one keeps the detector's class and "
    "score (skysift.second_look.relook, since session 18)",
    "every instance (its zoomed view holds each one whole)",
)


def card_for(config: SecondLookTrainingConfig, architecture, segmenter_card: dict) -> dict:
    """The model card (without metrics) of a second look trained with ``config``."""
    options = "" if config.segmenter == "segmenter_psf" else f" --segmenter {config.segmenter}"
    if config.reject:
        options += " --reject"
    if config.cutout != "native":
        options += f" --cutout {config.cutout}"
    if config.epochs != 40:
        options += f" --epochs {config.epochs}"
    if config.n_images[0] != DEFAULT_N_IMAGES[0]:
        options += f" --images {config.n_images[0]}"
    if config.n_images[1:] != DEFAULT_N_IMAGES[1:]:
        options += f" --typical-fields {config.n_images[1]}"
    if config.schedule != "constant":
        options += f" --schedule {config.schedule}"
    if config.threads != 2:
        options += f" --threads {config.threads}"
    if config.clumps_in_footprints:
        options += " --clumps-in-footprints"
    if config.burke_masks:
        options += " --burke-masks"
    if config.paint_by != "scores":
        options += f" --paint-by {config.paint_by}"
    if config.augment is not None:
        options += f" --augment {config.augment}"
    if config.mask_refiner is not None:
        options += f" --mask-refiner {config.mask_refiner}"
    if config.filters != DEFAULT_FILTERS:
        options += f" --filters {config.filters}"
    if config.neighbours:
        options += " --neighbours"
    if config.mask_jitter:
        options += f" --mask-jitter {config.mask_jitter}"
    if config.name != default_second_look_name(reject=config.reject, cutout=config.cutout):
        options += f" --name {config.name}"
    refined = ""
    if config.mask_refiner is not None:
        refined = f" drawn again by mask refiner {config.mask_refiner!r} where it draws them,"
    labels = (
        "labelled by the truth's group (galaxy, star), or false when it matches no truth source"
        if config.reject
        else "those that match a truth source, labelled by the truth's group"
    )
    if config.cutout == "both":
        scale = (
            "at the image's own pixel scale, then again zoomed out by the whole number z that "
            "fits the instance's mask with a 1.25 margin (z x z block means), stacked as "
            "channels"
        )
        seeing = "log(PSF FWHM of the detection band in pixels / seeing_reference)"
    elif config.cutout == "zoomed":
        scale = (
            "zoomed out by the whole number z that fits the instance's mask with a 1.25 margin "
            "(z x z block means; z = 1 for masks up to 25 px across)"
        )
        seeing = "log(PSF FWHM of the detection band in pixels / z / seeing_reference)"
    else:
        scale = "at the image's own pixel scale"
        seeing = "log(PSF FWHM of the detection band in pixels / seeing_reference)"
    card = {
        "name": config.name,
        "cutout": config.cutout,
        **({"neighbours": True} if config.neighbours else {}),
        "task": "star/galaxy second look at the segmenter's instances, from a 32x32 cutout of "
        "the bands and the instance's mask, and the PSF FWHM",
        "decides": DECIDES[config.cutout != "native"],
        "classes": list(classes_of(config)),
        "architecture": {"kind": "stargalaxy", "config": architecture.to_dict()},
        "normalization": {
            "kind": "segmenter",
            "formula": "the segmenter's normalized bands (its card's normalization), cut "
            f"{scale} around the centre of each instance's mask; channel bands + 1 is the "
            "instance's mask (the fraction of each cutout pixel inside it)"
            + (
                "; channel bands + 2 the other detections' masks (the fraction of each "
                "cutout pixel another covers)"
                if config.neighbours
                else ""
            ),
            "seeing": seeing,
        },
        "segmenter": {
            "name": config.segmenter,
            "sha256": segmenter_card["sha256"],
            "galaxy_types": config.galaxy_types,
        },
        "trained_on": {
            "stamps": "the segmenter's catalog instances (re-typed and painted as the Segmenter "
            "delivers them; a match is painted-mask IoU >= 0.5, one to one), each cut with "
            f"the detector's own mask,{refined} {labels}; detections of truth sources "
            "without a mask are left out",
            "images": dict(zip(config.train_dirs, config.n_images, strict=True)),
            "validation": config.val_dir,
        },
        "training": {
            "command": f"skysift train second-look --seed {config.seed}{options}",
            "seed": config.seed,
            "config": config.to_dict(),
        },
    }
    refiner = _mask_refiner(config)
    if refiner is not None:  # the Segmenter draws the look's masks with it (relook)
        card["mask_refiner"] = {"name": config.mask_refiner, "sha256": refiner.card["sha256"]}
    return card


def figure_before_after(
    segmenter, typer, second_look, directory: str, *, augment: str | None = None
) -> dict[str, Any]:
    """Burke et al.'s figure on the catalog of ``directory``'s images, without and with the
    second look (P@80 recall by S/N cut, stars and galaxies; the segmenter's views fused as
    ``augment`` says)."""
    from skysift.evaluate.segmentation import precision_at_recall_by_snr
    from skysift.train.segmenter import load_images, sample_targets, segmenter_catalogs

    samples = load_images(directory)
    targets = [sample_targets(s["labels"], s["ids"], s["classes"]) for s in samples]
    classes = segmenter.skysift_config.classes
    out = {"images": len(samples)}
    for label, look in (("before", None), ("after", second_look)):
        catalogs = segmenter_catalogs(
            segmenter, samples, galaxy_typer=typer, second_look=look, augment=augment
        )
        out[label] = precision_at_recall_by_snr(
            catalogs,
            targets,
            [s["snr"] for s in samples],
            classes,
            unmasked=[s["unmasked"] for s in samples],
        )
    return out


def finish_second_look(
    config: SecondLookTrainingConfig,
    best_weights: Path,
    *,
    out_dir: Path | None = None,
    test_dir: str = "data/segmenter_test",
    typical_dir: str = "data/segmenter_typical_test",
    progress: bool = True,
) -> Path:
    """Measure the held-out test images and write weights + card (fp16 when it holds)."""
    import torch
    from safetensors.torch import load_file
    from sklearn.metrics import confusion_matrix

    from skysift.models.registry import save_model, weights_dir
    from skysift.models.stargalaxy import StarGalaxyNet
    from skysift.second_look import SecondLook, predict_probabilities

    data = _stamps(config, progress)
    architecture = _architecture(config, data["val_cutouts"])
    context = _context(architecture, data, "val")
    model = StarGalaxyNet(architecture)
    model.load_state_dict(load_file(str(best_weights)))
    half = StarGalaxyNet(architecture)
    half.load_state_dict({k: v.half().to(v.dtype) for k, v in model.state_dict().items()})
    p_full = predict_probabilities(model, data["val_cutouts"], context)
    p_half = predict_probabilities(half, data["val_cutouts"], context)
    fp16 = float(np.abs(p_full - p_half).max()) < 0.01
    shipped = half if fp16 else model
    p = p_half if fp16 else p_full
    segmenter, segmenter_card, typer = _refiners(config)
    card = card_for(config, architecture, segmenter_card)
    card["trained_on"]["star_fraction"] = training_star_fraction(data["train_label"])
    card["parameters"] = int(sum(q.numel() for q in model.parameters()))
    labels = data["val_label"]
    card["metrics"] = {
        "validation_stamps": len(labels),
        "validation_log_loss": _log_loss(p, labels),
        "validation_accuracy": float(np.mean(p.argmax(axis=1) == labels)),
        "validation_confusion": confusion_matrix(
            labels, p.argmax(axis=1), labels=list(range(p.shape[1]))
        ).tolist(),
    }
    look = SecondLook(module=shipped, card=card)
    _require_test_images(
        test_dir,
        typical_dir,
        clumps_in_footprints=config.clumps_in_footprints,
        burke_masks=config.burke_masks,
    )
    card["metrics"]["test_precision_at_80_recall"] = figure_before_after(
        segmenter, typer, look, test_dir, augment=config.augment
    )
    card["metrics"]["typical_test_precision_at_80_recall"] = figure_before_after(
        segmenter, typer, look, typical_dir, augment=config.augment
    )
    Path(config.run_dir, "test_metrics.json").write_text(
        json.dumps(card["metrics"], indent=1, default=float) + "\n"
    )
    with torch.no_grad():
        return save_model(shipped, card, out_dir or weights_dir(), fp16=fp16)


def _require_test_images(
    test_dir: str, typical_dir: str, *, clumps_in_footprints: bool, burke_masks: bool = False
) -> None:
    """Simulate the segmenter's held-out test images and typical test fields, if missing."""
    from skysift.sim.dataset import write_dataset
    from skysift.train.segmenter_data import (
        SegmenterSamples,
        segmenter_field_configs,
        typical_field_configs,
    )

    truth = {"clumps_in_footprints": clumps_in_footprints, "burke_masks": burke_masks}
    write_dataset(test_dir, segmenter_field_configs("test", 128, **truth), SegmenterSamples())
    write_dataset(typical_dir, typical_field_configs("test", 64, **truth), SegmenterSamples())
