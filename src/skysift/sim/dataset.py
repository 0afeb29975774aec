"""Training data on disk: simulated fields streamed into compressed shards, resumably.

:func:`write_dataset` simulates one field at a time, turns it into samples with an *extractor*
(patches for the localizer, cutouts for the classifiers), writes them as one compressed ``.npz``
shard per field (atomically), and records the shard in ``manifest.json``. Memory holds one field
at a time; an interrupted run picks up where it stopped, skipping shards already written.

>>> from skysift.sim import FieldConfig
>>> from skysift.sim.dataset import LocalizerPatches, write_dataset
>>> configs = [FieldConfig(survey="meerlicht", size=512, seed=s) for s in range(10)]
>>> write_dataset("data/localizer", configs, LocalizerPatches(size=256))  # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from skysift.errors import InvalidParameterError
from skysift.io import atomic_write
from skysift.normalization import robust_level_scale
from skysift.sim.field import FieldConfig, SimulatedField, simulate_field

__all__ = ["LocalizerPatches", "iter_shards", "write_dataset", "write_role_datasets"]

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class LocalizerPatches:
    """Extract ``size`` x ``size`` patches with their ASID-L targets from a field.

    Each sample holds the raw image patch (ADU), the per-band level and scale of the *whole*
    field (:func:`robust_level_scale`, so training sees the same normalization as inference
    on a full image), the 13-pixel localization target, and the union of artifact masks.

    Parameters
    ----------
    size : int
        Patch side in pixels.
    stride : int, optional
        Step between patches (default ``size``: a non-overlapping grid covering the field).
    detection_band_only : bool
        Keep only the preset's detection band (the band the targets' S/N refers to).
    with_truth : bool
        Also store the truth sources of each patch (for detection metrics during training):
        flat arrays ``truth_x, truth_y`` (patch pixels), ``truth_snr``, ``truth_is_star`` and
        ``truth_patch`` (the patch index of each row).
    """

    size: int = 256
    stride: int | None = None
    detection_band_only: bool = False
    with_truth: bool = False

    def __call__(self, field: SimulatedField) -> dict[str, np.ndarray]:
        height, width = field.image.shape
        if height < self.size or width < self.size:
            raise InvalidParameterError(
                f"field {height}x{width} is smaller than the patch size {self.size}"
            )
        stride = self.stride or self.size
        rows = _starts(height, self.size, stride)
        cols = _starts(width, self.size, stride)
        data = np.asarray(field.image.data)
        if self.detection_band_only:
            band = field.image.bands.index(field.preset.detection_band)
            data = data[band : band + 1]
        stats = np.array(
            [robust_level_scale(band, field.image.mask) for band in data], dtype=np.float32
        )
        artifacts = field.artifacts.label_map > 0
        images, targets, artifact_masks, origins = [], [], [], []
        for r in rows:
            for c in cols:
                window = (slice(r, r + self.size), slice(c, c + self.size))
                images.append(data[(slice(None), *window)])
                targets.append(field.localization_mask[window])
                artifact_masks.append(artifacts[window])
                origins.append((r, c))
        n = len(images)
        extra = self._truth(field, origins) if self.with_truth else {}
        return extra | {
            "image": np.stack(images).astype(np.float32),
            "target": np.stack(targets).astype(np.uint8),
            "artifact": np.stack(artifact_masks).astype(np.uint8),
            "level": np.repeat(stats[np.newaxis, :, 0], n, axis=0),
            "scale": np.repeat(stats[np.newaxis, :, 1], n, axis=0),
            "origin": np.array(origins, dtype=np.int32),
            "seed": np.full(n, field.config.seed, dtype=np.int64),
        }

    def _truth(self, field: SimulatedField, origins) -> dict[str, np.ndarray]:
        truth = field.truth
        x, y = np.asarray(truth["x"]), np.asarray(truth["y"])
        parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("truth_x", "truth_y", "truth_snr", "truth_is_star", "truth_patch")
        }
        for index, (r, c) in enumerate(origins):
            inside = (
                (x >= c - 0.5)
                & (x < c + self.size - 0.5)
                & (y >= r - 0.5)
                & (y < r + self.size - 0.5)
            )
            parts["truth_x"].append(x[inside] - c)
            parts["truth_y"].append(y[inside] - r)
            parts["truth_snr"].append(np.asarray(truth["snr"])[inside])
            parts["truth_is_star"].append(np.asarray(truth["class"] == "star")[inside])
            parts["truth_patch"].append(np.full(int(inside.sum()), index))
        return {k: np.concatenate(v) for k, v in parts.items()}


def _starts(length: int, size: int, stride: int) -> list[int]:
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def write_dataset(
    out_dir,
    configs: Iterable[FieldConfig],
    extract: Callable[[SimulatedField], dict[str, np.ndarray]],
    *,
    progress: bool = True,
    description: str | None = None,
    workers: int = 1,
    extra_fields: bool = False,
) -> dict[str, Any]:
    """Simulate fields and write one compressed shard of samples per field.

    Parameters
    ----------
    out_dir : path
        Dataset directory (created). Holds ``shard_<seed>.npz`` files and ``manifest.json``.
    configs : iterable of FieldConfig
        The fields; their seeds must be unique (a shard is named by its field's seed).
    extract : callable
        ``extract(field) -> dict of arrays`` with a common first (sample) axis.
    progress : bool
        Show a progress bar over fields.
    description : str, optional
        Recorded in the manifest.
    workers : int
        Processes simulating fields at once (each field is drawn from its own seed, so the
        shards do not depend on it). Shards are written, and listed in the manifest, in the
        order of ``configs`` either way.
    extra_fields : bool
        Accept a directory that also holds fields not in ``configs`` (kept as they are), for
        readers that take only the seeds they name (``load_images(..., seeds=)``). Otherwise
        such a directory is refused, since a reader of the whole directory would mix the two
        datasets. A field of ``configs`` simulated with other settings is refused either way.

    Returns
    -------
    dict
        The manifest: ``{"description", "extractor", "shards": [{"file", "seed", "n",
        "config"}], "n_samples"}``.
    """
    from skysift.progress import progress_iter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    configs = list(configs)
    seeds = [c.seed for c in configs]
    if len(set(seeds)) != len(seeds):
        raise InvalidParameterError("configs must have unique seeds (one shard per seed)")
    manifest = _read_manifest(out) or {
        "description": description or "",
        "extractor": repr(extract),
        "shards": [],
    }
    if manifest["extractor"] != repr(extract):
        raise InvalidParameterError(
            f"{out}: its samples were written by {manifest['extractor']}, not by "
            f"{extract!r}; delete the directory or choose another one to simulate it afresh"
        )
    _refuse_other_fields(out, manifest, configs, extra_fields=extra_fields)
    done = {entry["seed"] for entry in manifest["shards"] if (out / entry["file"]).exists()}
    manifest["shards"] = [entry for entry in manifest["shards"] if entry["seed"] in done]
    todo = [c for c in configs if c.seed not in done]
    if workers < 1:
        raise InvalidParameterError(f"workers must be >= 1; got {workers}")
    for config, samples in progress_iter(
        zip(todo, _extracted(todo, extract, workers), strict=True),
        "simulating fields",
        enabled=progress,
        total=len(todo),
    ):
        name = f"shard_{config.seed:09d}.npz"
        with atomic_write(out / name) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(handle, **samples)
        n = len(next(iter(samples.values())))
        manifest["shards"].append(
            {"file": name, "seed": config.seed, "n": n, "config": config.to_dict()}
        )
        manifest["n_samples"] = sum(entry["n"] for entry in manifest["shards"])
        with atomic_write(out / MANIFEST) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    manifest["n_samples"] = sum(entry["n"] for entry in manifest["shards"])
    return manifest


def _extract_field(job: tuple[Callable[[SimulatedField], dict], FieldConfig]) -> dict:
    extract, config = job
    return extract(simulate_field(config))


def _extracted(
    configs: list[FieldConfig], extract: Callable[[SimulatedField], dict], workers: int
) -> Iterator[dict[str, np.ndarray]]:
    """Each field's samples, in the order of ``configs``, from ``workers`` processes."""
    jobs = [(extract, config) for config in configs]
    if workers == 1 or len(jobs) < 2:
        yield from map(_extract_field, jobs)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        yield from pool.map(_extract_field, jobs)


def _refuse_other_fields(
    out: Path, manifest: dict[str, Any], configs: list[FieldConfig], *, extra_fields: bool
) -> None:
    """Raise if ``out`` holds shards of fields other than ``configs`` (other seeds, unless
    ``extra_fields``, or the same seed simulated with other settings): a reader of the whole
    directory would mix two datasets silently."""
    wanted = {c.seed: json.loads(json.dumps(c.to_dict())) for c in configs}
    defaults = json.loads(json.dumps(FieldConfig().to_dict()))
    seeds = [entry["seed"] for entry in manifest["shards"]]
    stray = [] if extra_fields else [seed for seed in seeds if seed not in wanted]
    changed = [
        entry["seed"]
        for entry in manifest["shards"]
        if entry["seed"] in wanted
        and _with_defaults(entry.get("config"), defaults) != wanted[entry["seed"]]
    ]
    if stray or changed:
        what = (
            f"{len(stray)} field(s) not asked for (e.g. seed {stray[0]})"
            if stray
            else f"{len(changed)} field(s) simulated with other settings (e.g. seed {changed[0]})"
        )
        raise InvalidParameterError(
            f"{out}: holds {what}; delete the directory or choose another one to simulate "
            "this dataset afresh"
        )


def _read_manifest(out: Path) -> dict[str, Any] | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text())


def dataset_seeds(out_dir) -> list[int]:
    """The seeds of the fields a dataset directory holds, in its manifest's order."""
    out = Path(out_dir)
    manifest = _read_manifest(out)
    if manifest is None:
        raise InvalidParameterError(f"{out}: no {MANIFEST}; not a skysift dataset directory")
    return [entry["seed"] for entry in manifest["shards"]]


def dataset_configs(out_dir) -> dict[int, dict[str, Any] | None]:
    """Each field's :class:`FieldConfig` as its manifest records it (``to_dict()`` form),
    by seed; None for a shard written without one."""
    out = Path(out_dir)
    manifest = _read_manifest(out)
    if manifest is None:
        raise InvalidParameterError(f"{out}: no {MANIFEST}; not a skysift dataset directory")
    return {entry["seed"]: entry.get("config") for entry in manifest["shards"]}


def iter_shards(out_dir, *, seeds: Iterable[int] | None = None) -> Iterator[dict[str, np.ndarray]]:
    """Yield the arrays of each shard in a dataset directory (one shard in memory at a time)."""
    out = Path(out_dir)
    manifest = _read_manifest(out)
    if manifest is None:
        raise InvalidParameterError(f"{out}: no {MANIFEST}; not a skysift dataset directory")
    wanted = None if seeds is None else set(seeds)
    for entry in manifest["shards"]:
        if wanted is not None and entry["seed"] not in wanted:
            continue
        with np.load(out / entry["file"]) as shard:
            yield {key: shard[key] for key in shard.files}


def _with_defaults(
    recorded: dict[str, Any] | None, defaults: dict[str, Any]
) -> dict[str, Any] | None:
    """A shard's recorded config with the settings added to :class:`FieldConfig` since it was
    written filled in from ``defaults`` (a default config's JSON form; a new setting's
    default keeps the pixels fields had before it)."""
    if recorded is None:
        return None
    return {**{k: v for k, v in defaults.items() if k not in recorded}, **recorded}


def write_role_datasets(
    datasets: Iterable[tuple[str, str, int]],
    configs: Callable[[str, int], list[FieldConfig]],
    extract: Callable[[SimulatedField], dict[str, np.ndarray]],
    *,
    description: str,
    workers: int = 1,
    progress: bool = True,
    extra_fields: bool = False,
) -> None:
    """:func:`write_dataset` for each ``(directory, role, n)``: the ``n`` fields
    ``configs(role, n)``; ``description`` is formatted with ``role``; ``extra_fields`` as
    there (for readers that take only the fields they name)."""
    for directory, role, n in datasets:
        write_dataset(
            directory,
            configs(role, n),
            extract,
            progress=progress,
            description=description.format(role=role),
            workers=workers,
            extra_fields=extra_fields,
        )
