"""Many images: the pipeline mapped over files with Dask, resumable through a manifest.

``run_batch(paths, out_dir)`` submits one task per image to a ``dask.distributed`` cluster (a
``LocalCluster`` by default, or any scheduler address). Each task reads its image, runs the
pipeline, and writes its outputs atomically into ``out_dir/<image stem>/`` plus one Parquet
partition of the combined catalog dataset (``out_dir/catalogs/image=<stem>/``). A bad file fails
only its own task; its reason goes into the manifest (``out_dir/manifest.json``) and the summary.
A re-run skips images recorded as done whose outputs exist, and retries the failed ones and
those a killed run left unfinished (removing any temporary files it left behind).
"""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skysift.config import PipelineConfig
from skysift.errors import InvalidParameterError
from skysift.io import atomic_write

__all__ = ["BatchSummary", "band_groups", "image_name", "run_batch"]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_PIPELINES: dict[str, Any] = {}


@dataclass
class BatchSummary:
    """What a batch run did. ``ok`` is False when any image failed."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    manifest: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def __str__(self) -> str:
        lines = [
            f"{len(self.done)} processed, {len(self.skipped)} already done, "
            f"{len(self.failed)} failed (manifest: {self.manifest})"
        ]
        lines += [f"  FAILED {name}: {reason}" for name, reason in self.failed.items()]
        return "\n".join(lines)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".fits.fz", ".fits.gz", ".fits", ".fit", ".fz"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def image_name(image: str | Path | list) -> str:
    """The name of one batch image's outputs: its file's stem, or for bands in several
    files the stems' common start and end around their differing parts joined
    (``f42_g``, ``f42_r``, ``f42_z`` -> ``f42_grz``; ``g/f42``, ``r/f42`` -> ``f42``)."""
    if isinstance(image, str | Path):
        return _stem(Path(image))
    stems = [_stem(Path(p)) for p in image]
    if len(set(stems)) == 1:
        return stems[0]
    start = _shared_start(stems)
    end = _shared_start([s[start:][::-1] for s in stems])
    middle = "".join(s[start : len(s) - end] for s in stems)
    return stems[0][:start] + middle + stems[0][len(stems[0]) - end :]


def _shared_start(strings: list[str]) -> int:
    """Length of the characters every string starts with (the lexicographically first and
    last share exactly those)."""
    first, last = min(strings), max(strings)
    n = 0
    while n < len(first) and first[n] == last[n]:
        n += 1
    return n


def process_image(path: str | list[str], out_dir: str, config: dict[str, Any]) -> dict[str, Any]:
    """One batch task: read (one file, or one per band), run, write. Never raises; failures
    come back as records."""
    from skysift.io import read_image, write_catalog
    from skysift.pipeline import Pipeline

    start = time.perf_counter()
    stem = image_name(path)
    record: dict[str, Any] = {"image": path, "name": stem}
    try:
        key = json.dumps(config, sort_keys=True)
        if key not in _PIPELINES:  # one loaded model per worker process, not per image
            _PIPELINES[key] = Pipeline(PipelineConfig.from_dict(config))
        image = read_image(path)
        result = _PIPELINES[key](image)
        outputs = result.write(Path(out_dir) / stem, name=stem, overwrite=True)
        partition = Path(out_dir) / "catalogs" / f"image={stem}" / "part-0.parquet"
        partition.parent.mkdir(parents=True, exist_ok=True)
        write_catalog(result.catalog, partition, format="parquet", overwrite=True)
        record |= {
            "status": "done",
            "n_sources": len(result.catalog),
            "timings": result.timings,
            "skipped_stages": result.skipped,
            "outputs": {k: str(v) for k, v in outputs.items()} | {"parquet": str(partition)},
        }
    except Exception as exc:
        record |= {
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exc(limit=3),
        }
    record["seconds"] = time.perf_counter() - start
    return record


def band_groups(patterns, bands) -> list[list[str]]:
    """The images of ``patterns`` whose bands are one file each.

    Parameters
    ----------
    patterns : iterable of str
        File names or glob patterns, each holding ``{band}`` where the band's name stands in
        its files' names (``tiles/*_{band}.fits``).
    bands : sequence of str
        The bands, in the order they are read (g, r, z for the shred classifier and the
        segmenter's colours).

    Returns
    -------
    list of list of str
        For each file of the first band, its image's files in ``bands`` order, sorted.

    Raises
    ------
    InvalidParameterError
        A pattern without ``{band}``, or a file of the first band with another band's missing.
    """
    import fnmatch
    import glob

    bands = [str(b) for b in bands]
    if not bands or not all(bands):
        raise InvalidParameterError(f"bands must be band names, got {bands}")
    groups, missing = [], []
    for pattern in patterns:
        if "{band}" not in pattern:
            raise InvalidParameterError(
                f"pattern {pattern!r} has no {{band}} to put the bands {bands} in"
            )
        before, after = pattern.split("{band}", 1)
        first = pattern.replace("{band}", bands[0])
        for path in sorted(glob.glob(first) or ([first] if Path(first).exists() else [])):
            cut = next(
                i
                for i in range(len(path))
                if path.startswith(bands[0], i)
                and fnmatch.fnmatchcase(path[:i], before)
                and fnmatch.fnmatchcase(path[i + len(bands[0]) :], after.replace("{band}", "*"))
            )
            group = [path[:cut] + band + path[cut + len(bands[0]) :] for band in bands]
            missing += [p for p in group if not Path(p).exists()]
            groups.append(group)
    if missing:
        raise InvalidParameterError(
            f"{len(missing)} band file(s) missing, e.g. {missing[:3]}: every image needs "
            f"its {', '.join(bands)} files"
        )
    return groups


def _load_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {"images": {}}


def _save_manifest(out: Path, manifest: dict[str, Any]) -> None:
    with atomic_write(out / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")


def _remove_leftovers(out: Path, stem: str) -> list[Path]:
    """Delete the temporary files a killed run left for image ``stem`` (see ``atomic_write``).

    Outputs are renamed into place only when complete, so a run killed mid-write leaves at
    most hidden ``.<name>.*.part*`` files, never a partial output; they are removed before the
    image is processed again.
    """
    removed = []
    for folder in (out / stem, out / "catalogs" / f"image={stem}"):
        if folder.is_dir():
            for leftover in folder.glob(".*.part*"):
                leftover.unlink(missing_ok=True)
                removed.append(leftover)
    return removed


def _finished(entry: dict[str, Any] | None) -> bool:
    if not entry or entry.get("status") != "done":
        return False
    return all(Path(p).exists() for p in entry.get("outputs", {}).values())


def run_batch(
    paths,
    out_dir,
    *,
    config: PipelineConfig | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> BatchSummary:
    """Run the pipeline on many images with Dask.

    Parameters
    ----------
    paths : iterable of path or of sequences of paths
        Images, one task each: a file, or the files of one image's bands (read together, as
        ``skysift run g.fits r.fits z.fits`` does; its outputs are named by
        :func:`image_name`).
    out_dir : path
        Output directory (per-image folders, ``catalogs/`` Parquet dataset, manifest).
    config : PipelineConfig, optional
    scheduler : str, optional
        Address of a running ``dask.distributed`` scheduler (``tcp://host:8786``); a
        ``LocalCluster`` is started when not given.
    workers : int, optional
        Worker processes of the local cluster (default 2, one thread each).
    progress : bool
        Show a progress bar over images.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    from skysift.progress import progress_iter

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images: list[str | list[str]] = [
        str(Path(p)) if isinstance(p, str | Path) else [str(Path(b)) for b in p] for p in paths
    ]
    if not images:
        raise InvalidParameterError("no input images given")
    stems = [image_name(p) for p in images]
    duplicates = {s for s in stems if stems.count(s) > 1}
    if duplicates:
        raise InvalidParameterError(
            f"images with the same name would share outputs: {sorted(duplicates)}"
        )
    config = config or PipelineConfig()
    manifest = _load_manifest(out)
    manifest["config"] = config.to_dict()
    summary = BatchSummary(manifest=out / MANIFEST)
    todo = []
    for image, stem in zip(images, stems, strict=True):
        if _finished(manifest["images"].get(stem)):
            summary.skipped.append(stem)
        else:
            for leftover in _remove_leftovers(out, stem):
                log.info("removed %s, left by an interrupted run", leftover)
            todo.append(image)
    if todo:
        cluster = None
        if scheduler is None:
            cluster = LocalCluster(
                n_workers=workers or 2, threads_per_worker=1, processes=True, dashboard_address=None
            )
        client = Client(scheduler or cluster)
        try:
            futures = [
                client.submit(
                    process_image,
                    image,
                    str(out),
                    config.to_dict(),
                    key=f"skysift-{image_name(image)}-{time.time_ns()}",
                    pure=False,
                )
                for image in todo
            ]
            for future in progress_iter(
                as_completed(futures), "images", enabled=progress, total=len(futures)
            ):
                record = future.result()
                manifest["images"][record["name"]] = record
                _save_manifest(out, manifest)
                if record["status"] == "done":
                    summary.done.append(record["name"])
                else:
                    summary.failed[record["name"]] = record["error"]
                    log.warning("%s failed: %s", record["image"], record["error"])
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    _save_manifest(out, manifest)
    return summary
