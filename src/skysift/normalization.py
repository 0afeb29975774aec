"""How skysift's networks see pixels: one robust level and scale per image, asinh-compressed.

The statistics are computed once for a whole image (never per tile), NaN-aware and insensitive
to sources and artifacts, so tiles share one scaling and training patches are scaled as the
full images they came from. The model card records the softening.
"""

from __future__ import annotations

import numpy as np

__all__ = ["normalize", "robust_level_scale"]


def robust_level_scale(data: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """Median and MAD-based standard deviation of the finite, unmasked pixels.

    The one normalization statistic of skysift's networks: computed once per image (never per
    tile), NaN-aware, and insensitive to sources and artifacts.
    """
    values = np.asarray(data)
    # images above 2 Mpix: a strided subsample of ~1 Mpix is as good, much faster, and taken
    # before any conversion so that no image-sized temporary is made
    step = values.size // 1_000_000 if values.size > 2_000_000 else 1
    values = values.reshape(-1)[::step]
    sample = np.asarray(values, dtype=np.float32)
    good = np.isfinite(sample)
    if mask is not None:
        good &= ~np.asarray(mask, dtype=bool).reshape(-1)[::step]
    sample = sample[good]
    if sample.size == 0:
        return 0.0, 1.0
    level = float(np.median(sample))
    scale = 1.4826 * float(np.median(np.abs(sample - level)))
    return level, scale if scale > 0 else 1.0


def normalize(data: np.ndarray, level: float, scale: float, softening: float) -> np.ndarray:
    """``asinh((data - level) / (softening * scale))`` as float32 (the network's input)."""
    out = np.asarray(data, dtype=np.float32) - np.float32(level)
    out /= np.float32(softening * scale)
    return np.arcsinh(out, out=out)
