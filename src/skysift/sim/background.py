"""Sky background and amplifier offsets, left in the image as raw frames have them."""

from __future__ import annotations

import numpy as np

from skysift.sim.presets import SurveyPreset

__all__ = ["amplifier_offsets", "sky_model"]


def sky_model(
    preset: SurveyPreset, shape: tuple[int, int], rng: np.random.Generator, *, gradient: float
) -> tuple[np.ndarray, dict[str, float]]:
    """Sky in electrons per pixel, ``(bands, height, width)``, with a linear gradient.

    The sky is the preset's sky brightness times ``1 + g * ramp`` where ``ramp`` runs from
    -0.5 to +0.5 across the image along a random direction and ``g`` is drawn uniformly from
    ``[0, gradient]``: ``gradient=0.1`` allows up to 10 % change corner to corner.

    Returns the sky and a description ``{"sky_gradient": g, "sky_gradient_angle": deg}``.
    """
    height, width = shape
    strength = float(rng.uniform(0.0, gradient)) if gradient > 0 else 0.0
    angle = float(rng.uniform(0.0, 2 * np.pi))
    y = (np.arange(height, dtype=np.float32) - (height - 1) / 2) / max(height, 1)
    x = (np.arange(width, dtype=np.float32) - (width - 1) / 2) / max(width, 1)
    ramp = np.cos(angle) * x[np.newaxis, :] + np.sin(angle) * y[:, np.newaxis]
    ramp = ramp / max(abs(np.cos(angle)) + abs(np.sin(angle)), 1e-9)
    shape_factor = (1.0 + strength * ramp).astype(np.float32)
    sky = np.stack([preset.sky_electrons(b) * shape_factor for b in preset.band_names])
    return sky, {"sky_gradient": strength, "sky_gradient_angle": float(np.degrees(angle))}


def amplifier_offsets(
    preset: SurveyPreset, shape: tuple[int, int], rng: np.random.Generator, *, scale: float
) -> np.ndarray:
    """Per-amplifier offsets in ADU, ``(height, width)``, same for all bands' read-outs.

    The detector is split into ``preset.amplifiers`` = (rows, columns) equal blocks; each block
    gets an offset drawn from a normal distribution of standard deviation ``scale`` ADU.
    """
    height, width = shape
    n_rows, n_cols = preset.amplifiers
    offsets = rng.normal(0.0, scale, size=(n_rows, n_cols)).astype(np.float32)
    row_block = np.minimum(np.arange(height) * n_rows // max(height, 1), n_rows - 1)
    col_block = np.minimum(np.arange(width) * n_cols // max(width, 1), n_cols - 1)
    return offsets[row_block[:, np.newaxis], col_block[np.newaxis, :]]
