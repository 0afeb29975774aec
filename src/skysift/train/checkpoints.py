"""Shared bookkeeping of the training loops: the JSON-lines log and the best weights."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

__all__ = ["append_log", "save_weights"]

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
