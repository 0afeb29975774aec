"""Square cutouts around sources, for the classifiers.

A cutout of even side ``size`` around a source at ``(x, y)`` covers columns
``round(x) - size/2 ... round(x) + size/2 - 1`` (rows likewise), so the source's pixel sits at
index ``size // 2``. Cutouts that reach past the image edge (or onto masked pixels) are filled
with ``fill`` there and flagged; they are never dropped, since a classifier must return a value
for every catalogued source.
"""

from __future__ import annotations

import numpy as np

from skysift.errors import InvalidParameterError

__all__ = ["extract_cutouts"]


def extract_cutouts(
    data: np.ndarray,
    x,
    y,
    *,
    size: int,
    fill: float = 0.0,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``size`` x ``size`` stamps centred on each ``(x, y)``.

    Parameters
    ----------
    data : numpy.ndarray
        2-D image. Not modified.
    x, y : array_like
        0-based source positions (x = column, y = row).
    size : int
        Cutout side in pixels (even).
    fill : float
        Value for pixels outside the image or masked.
    mask : numpy.ndarray, optional
        Boolean bad-pixel mask of the image's shape; masked pixels are set to ``fill``.

    Returns
    -------
    cutouts : numpy.ndarray
        ``(n, size, size)`` float32.
    edge : numpy.ndarray
        Boolean per source: the cutout reached past the image edge.
    """
    data = np.asarray(data)
    if data.ndim != 2:
        raise InvalidParameterError(f"cutouts need a 2-D image; got shape {data.shape}")
    if size < 2 or size % 2:
        raise InvalidParameterError(f"cutout size must be an even number >= 2; got {size}")
    if mask is not None and np.shape(mask) != data.shape:
        raise InvalidParameterError(
            f"mask shape {np.shape(mask)} differs from the image shape {data.shape}"
        )
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise InvalidParameterError(f"x and y differ in length: {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidParameterError("source positions must be finite")
    height, width = data.shape
    half = size // 2
    c0 = np.rint(x).astype(np.int64) - half
    r0 = np.rint(y).astype(np.int64) - half
    edge = (c0 < 0) | (r0 < 0) | (c0 + size > width) | (r0 + size > height)
    cutouts = np.full((x.size, size, size), fill, dtype=np.float32)
    inside = np.flatnonzero(~edge)
    if inside.size:
        windows = np.lib.stride_tricks.sliding_window_view(data, (size, size))
        cutouts[inside] = windows[r0[inside], c0[inside]]
        if mask is not None:
            masked = np.lib.stride_tricks.sliding_window_view(np.asarray(mask, bool), (size, size))
            cutouts[inside] = np.where(masked[r0[inside], c0[inside]], fill, cutouts[inside])
    for k in np.flatnonzero(edge):
        rows = slice(max(r0[k], 0), min(r0[k] + size, height))
        cols = slice(max(c0[k], 0), min(c0[k] + size, width))
        if rows.start >= rows.stop or cols.start >= cols.stop:
            continue  # entirely outside: all fill
        target = (
            slice(rows.start - r0[k], rows.stop - r0[k]),
            slice(cols.start - c0[k], cols.stop - c0[k]),
        )
        stamp = np.asarray(data[rows, cols], dtype=np.float32)
        if mask is not None:
            stamp = np.where(np.asarray(mask)[rows, cols], fill, stamp)
        cutouts[k][target] = stamp
    return cutouts, edge
