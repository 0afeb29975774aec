"""skysift: find, localize, classify and segment sources in astronomical images.

The public API is imported lazily, so ``import skysift`` stays fast and only the parts a
program touches load torch, GalSim or photutils.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

# public name -> module that defines it
_LAZY = {
    "Image": "skysift.image",
    "read_image": "skysift.io",
    "SkysiftError": "skysift.errors",
    "simulate_field": "skysift.sim.field",
    "FieldConfig": "skysift.sim.field",
    "SimulatedField": "skysift.sim.field",
    "get_preset": "skysift.sim.presets",
    "localize": "skysift.localizer",
    "Pipeline": "skysift.pipeline",
    "PipelineConfig": "skysift.config",
    "Result": "skysift.result",
    "run": "skysift.pipeline",
    "Localizer": "skysift.localizer",
    "classify_stars": "skysift.stargalaxy",
    "StarGalaxyClassifier": "skysift.stargalaxy",
    "DetectorGeometry": "skysift.stargalaxy",
    "find_shreds": "skysift.shreds",
    "ShredClassifier": "skysift.shreds",
    "Segmenter": "skysift.segment",
    "SegmentConfig": "skysift.segment",
    "match_catalogs": "skysift.evaluate.matching",
    "detection_metrics": "skysift.evaluate.metrics",
    "classification_metrics": "skysift.evaluate.classification",
}

__all__ = [
    "DetectorGeometry",
    "FieldConfig",
    "Image",
    "Localizer",
    "Pipeline",
    "PipelineConfig",
    "Result",
    "SegmentConfig",
    "Segmenter",
    "ShredClassifier",
    "SimulatedField",
    "SkysiftError",
    "StarGalaxyClassifier",
    "__version__",
    "classification_metrics",
    "classify_stars",
    "detection_metrics",
    "find_shreds",
    "get_preset",
    "localize",
    "match_catalogs",
    "read_image",
    "run",
    "simulate_field",
]

if TYPE_CHECKING:
    from skysift.config import PipelineConfig
    from skysift.errors import SkysiftError
    from skysift.evaluate.classification import classification_metrics
    from skysift.evaluate.matching import match_catalogs
    from skysift.evaluate.metrics import detection_metrics
    from skysift.image import Image
    from skysift.io import read_image
    from skysift.localizer import Localizer, localize
    from skysift.pipeline import Pipeline, run
    from skysift.result import Result
    from skysift.segment import SegmentConfig, Segmenter
    from skysift.shreds import ShredClassifier, find_shreds
    from skysift.sim.field import FieldConfig, SimulatedField, simulate_field
    from skysift.sim.presets import get_preset
    from skysift.stargalaxy import DetectorGeometry, StarGalaxyClassifier, classify_stars


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'skysift' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
