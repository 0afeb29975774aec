"""Simulated fields with complete truth, built on GalSim (the training and test ground)."""

from skysift.sim.artifacts import ARTIFACT_KINDS
from skysift.sim.field import (
    BURKE_PEAK_FRACTIONS,
    DENSITIES,
    FieldConfig,
    SimulatedField,
    simulate_field,
)
from skysift.sim.presets import PRESETS, SurveyPreset, get_preset, point_source_depth
from skysift.sim.seeds import SEED_RANGES, seed_role

__all__ = [
    "ARTIFACT_KINDS",
    "BURKE_PEAK_FRACTIONS",
    "DENSITIES",
    "PRESETS",
    "SEED_RANGES",
    "FieldConfig",
    "SimulatedField",
    "SurveyPreset",
    "get_preset",
    "point_source_depth",
    "seed_role",
    "simulate_field",
]
