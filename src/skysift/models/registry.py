"""Shipped models: safetensors weights with JSON model cards, verified on load.

Every shipped model is two files in ``skysift/weights/``: ``<name>.safetensors`` (never a
pickle) and ``<name>.json``, its card: architecture, normalization, bands and pixel scales it was
trained on, metrics on held-out fields, the command and seed that reproduce it, and the sha256
of the weights file. :func:`load_model` refuses a weights file whose hash differs from the card.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from skysift.errors import SkysiftError

__all__ = [
    "ModelIntegrityError",
    "list_models",
    "load_card",
    "load_model",
    "save_model",
    "shipped_or_given",
    "verify_weights",
    "weights_dir",
]


class ModelIntegrityError(SkysiftError):
    """A weights file does not match its model card (tampered, truncated or mismatched)."""


def weights_dir() -> Path:
    """Directory of the shipped weights and cards."""
    return Path(str(resources.files("skysift") / "weights"))


def _builders() -> dict[str, Callable[[dict], Any]]:
    from skysift.models.colour_typer import ColourTyperConfig, ColourTyperNet
    from skysift.models.morphology import MorphologyConfig, MorphologyNet
    from skysift.models.segmenter import SegmenterConfig, build_segmenter
    from skysift.models.stargalaxy import StarGalaxyConfig, StarGalaxyNet
    from skysift.models.unet import UNet, UNetConfig

    def stargalaxy(arch: dict) -> StarGalaxyNet:
        return StarGalaxyNet(StarGalaxyConfig.from_dict(arch))

    return {
        "unet": lambda arch: UNet(UNetConfig(**{**arch, "widths": tuple(arch["widths"])})),
        "stargalaxy": stargalaxy,
        "segmenter": lambda arch: build_segmenter(SegmenterConfig.from_dict(arch)),
        "morphology": lambda arch: MorphologyNet(MorphologyConfig.from_dict(arch)),
        "colour_typer": lambda arch: ColourTyperNet(ColourTyperConfig.from_dict(arch)),
    }


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_location(reference: str) -> tuple[str, Path | None]:
    """``(name, folder)`` of a model given by a shipped model's name (folder None) or by the
    path of a card written elsewhere (``<folder>/<name>.json``, e.g. by a training's
    ``--out``)."""
    if reference.endswith(".json"):
        path = Path(reference)
        return path.stem, path.parent
    return reference, None


def load_card(name: str, *, directory: Path | None = None) -> dict[str, Any]:
    """The model card of a shipped (or ``directory``) model."""
    folder = directory or weights_dir()
    path = folder / f"{name}.json"
    if not path.exists():
        known = sorted(p.stem for p in folder.glob("*.json"))
        raise SkysiftError(f"no model called {name!r} in {folder}; available: {known}")
    return json.loads(path.read_text())


def list_models(*, directory: Path | None = None) -> list[dict[str, Any]]:
    """Cards of every shipped model."""
    folder = directory or weights_dir()
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def shipped_or_given(name: str, module=None, card=None, *, what: str = "module"):
    """``(module, card)``: the shipped model ``name`` (or the model of a card's path, see
    :func:`model_location`), or a given ``module`` (training and tests) with its ``card``,
    which it cannot do without; the module is put in eval mode."""
    if module is None:
        model_name, folder = model_location(name)
        return load_model(model_name, directory=folder)
    if card is None:
        from skysift.errors import InvalidParameterError

        raise InvalidParameterError(f"a {what} needs its model card")
    return module.eval(), card


def load_model(name: str, *, directory: Path | None = None):
    """Build a model and load its verified weights; returns ``(module, card)`` in eval mode.

    Raises
    ------
    ModelIntegrityError
        The weights file is missing or its sha256 differs from the card's.
    """
    from safetensors.torch import load_file

    folder = directory or weights_dir()
    card = load_card(name, directory=folder)
    path = verify_weights(card, directory=folder)
    builder = _builders()[card["architecture"]["kind"]]
    module = builder(card["architecture"]["config"])
    state = {k: v.float() for k, v in load_file(str(path)).items()}
    module.load_state_dict(state)
    module.eval()
    return module, card


def verify_weights(card: dict[str, Any], *, directory: Path | None = None) -> Path:
    """Path of the card's weights file after checking its sha256 against the card.

    Raises
    ------
    ModelIntegrityError
        The weights file is missing or its sha256 differs from the card's.
    """
    name = card["name"]
    path = (directory or weights_dir()) / card["weights"]
    if not path.exists():
        raise ModelIntegrityError(f"{name}: weights file {path} is missing")
    actual = sha256_of(path)
    if actual != card["sha256"]:
        raise ModelIntegrityError(
            f"{name}: {path.name} has sha256 {actual[:16]}..., but its card expects "
            f"{card['sha256'][:16]}...; the file was modified or does not belong to this card. "
            "Refusing to load it."
        )
    return path


def save_model(module, card: dict[str, Any], directory: Path, *, fp16: bool = True) -> Path:
    """Write ``module``'s weights (fp16 by default) and its card with the sha256 filled in."""
    from safetensors.torch import save_file

    from skysift.io import atomic_write

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    name = card["name"]
    weights = directory / f"{name}.safetensors"
    state = {
        k: (v.half() if fp16 and v.is_floating_point() else v).contiguous()
        for k, v in module.state_dict().items()
    }
    with atomic_write(weights) as tmp:
        save_file(state, str(tmp))
    card = {
        **card,
        "weights": weights.name,
        "sha256": sha256_of(weights),
        "dtype": "float16" if fp16 else "float32",
    }
    with atomic_write(directory / f"{name}.json") as tmp:
        # strict JSON: NaN/inf (a metric with nothing to measure) become null
        tmp.write_text(json.dumps(_strict_json(card), indent=2, allow_nan=False) + "\n")
    return weights


def _strict_json(value):
    if isinstance(value, dict):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
