"""Shared bookkeeping of the training loops: the JSON-lines log, the best weights, the
random streams a checkpoint must carry for a resumed run to equal an uninterrupted one, and
the caches of arrays a run computes once (kept with the settings that made them)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "append_log",
    "random_state",
    "read_cache",
    "restore_random_state",
    "save_weights",
    "write_cache",
]

log = logging.getLogger(__name__)


def append_log(path: Path, entry: dict[str, Any]) -> None:
    """Append one validation entry to a JSON-lines training log (and to the logger)."""
    with open(path, "a") as handle:
        handle.write(json.dumps(entry) + "\n")
    log.info("step %s: %s", entry.get("step"), entry)


def save_weights(model, path: Path) -> None:
    """Write a module's state as safetensors (contiguous copies of every tensor)."""
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def random_state(rng: np.random.Generator) -> dict[str, Any]:
    """Checkpoint entries holding every random stream a training loop draws from.

    ``rng`` (numpy: batches, augmentation) goes under ``"rng"``; torch's CPU generator
    (Mask R-CNN's proposal and RoI sampling, dropout) under ``"torch_rng"``. Without the
    second, a run resumed from the checkpoint draws other samples than an uninterrupted
    run and ends with other weights.
    """
    import torch

    return {"rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state()}


def restore_random_state(rng: np.random.Generator, checkpoint: dict[str, Any]) -> None:
    """Set ``rng`` and torch's CPU generator from a checkpoint of :func:`random_state`.

    A checkpoint written before torch's generator was recorded restores ``rng`` alone and
    logs a warning: the resumed run is then not bit-identical to an uninterrupted one.
    """
    import torch

    rng.bit_generator.state = checkpoint["rng"]
    if "torch_rng" in checkpoint:
        torch.set_rng_state(checkpoint["torch_rng"])
    else:
        log.warning(
            "this checkpoint does not hold torch's random state: the resumed run will not be "
            "bit-identical to an uninterrupted one"
        )


def read_cache(path: Path, settings: dict[str, Any]) -> dict[str, np.ndarray] | None:
    """The arrays :func:`write_cache` kept in ``path`` with these ``settings``; None when
    there is no such file.

    Raises
    ------
    InvalidParameterError
        If the file was written with other settings, or before settings were kept: another
        run's arrays in the same run folder are never taken for this run's.
    """
    from skysift.errors import InvalidParameterError

    path = Path(path)
    if not path.exists():
        return None
    with np.load(path) as cached:
        if "settings" in cached.files and str(cached["settings"]) == _settings_text(settings):
            return {key: cached[key] for key in cached.files if key != "settings"}
    raise InvalidParameterError(
        f"{path}: computed by another run (other fields, models or options); delete it or "
        "choose another run folder"
    )


def write_cache(path: Path, settings: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path:
    """Keep ``arrays`` in ``path`` (npz, written atomically) with the ``settings`` that
    :func:`read_cache` will ask for."""
    from skysift.io import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, settings=np.array(_settings_text(settings)), **arrays)
    return path


def _settings_text(settings: dict[str, Any]) -> str:
    return json.dumps(settings, sort_keys=True, default=list)
