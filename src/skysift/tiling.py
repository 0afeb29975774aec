"""Overlapping tiles over an image, stitched back without seams or duplicates.

Tiles of ``tile`` x ``tile`` pixels step by ``tile - 2 * margin``; from each tile only its
interior (``margin`` pixels trimmed on every side that touches another tile) is kept, and the
kept interiors partition the image exactly. Every output pixel therefore comes from a tile in
which it had at least ``margin`` pixels of context, which is what removes the seams of
non-overlapping tiles (the ASID-L code's weakness). Images smaller than a tile are padded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from skysift.errors import InvalidParameterError

__all__ = ["Tile", "choose_tile", "predict_tiled", "tile_grid"]


@dataclass(frozen=True)
class Tile:
    """One tile: where it is read from, and which part of its output is kept.

    ``rows``/``cols`` index the (padded) image; ``keep_rows``/``keep_cols`` index the tile;
    ``out_rows``/``out_cols`` index the (unpadded) output.
    """

    rows: slice
    cols: slice
    keep_rows: slice
    keep_cols: slice
    out_rows: slice
    out_cols: slice


def _axis(length: int, tile: int, margin: int) -> list[tuple[int, int, int]]:
    """(tile start, keep start, keep stop) along one axis, in image coordinates."""
    if length <= tile:
        return [(0, 0, length)]
    step = tile - 2 * margin
    starts = list(range(0, length - tile + 1, step))
    if starts[-1] != length - tile:
        starts.append(length - tile)
    spans = []
    previous_stop = 0
    for k, start in enumerate(starts):
        stop = length if k == len(starts) - 1 else start + tile - margin
        spans.append((start, previous_stop, stop))
        previous_stop = stop
    return spans


def tile_grid(shape: tuple[int, int], *, tile: int, margin: int) -> list[Tile]:
    """Tiles covering an image of ``shape`` (height, width).

    Images smaller than ``tile`` along an axis are meant to be padded to ``tile`` there
    (see :func:`predict_tiled`); the kept region is the image itself.
    """
    if tile <= 0 or margin < 0 or 2 * margin >= tile:
        raise InvalidParameterError(
            f"tile ({tile}) must be positive and larger than twice the margin ({margin})"
        )
    tiles = []
    for r0, r_lo, r_hi in _axis(shape[0], tile, margin):
        for c0, c_lo, c_hi in _axis(shape[1], tile, margin):
            tiles.append(
                Tile(
                    rows=slice(r0, r0 + tile),
                    cols=slice(c0, c0 + tile),
                    keep_rows=slice(r_lo - r0, r_hi - r0),
                    keep_cols=slice(c_lo - c0, c_hi - c0),
                    out_rows=slice(r_lo, r_hi),
                    out_cols=slice(c_lo, c_hi),
                )
            )
    return tiles


def choose_tile(
    shape: tuple[int, int], *, margin: int, multiple: int, smallest: int = 256, largest: int = 576
) -> int:
    """The square tile side that makes the network compute the fewest pixels for ``shape``.

    Tiles overlap by ``2 * margin`` and the last tile along an axis is shifted back to the
    edge, so a fixed tile can waste a good part of the work: 256-pixel tiles compute 1.44x the
    pixels of a 2560x2560 image, 544-pixel tiles 1.13x. Candidates are the multiples of
    ``multiple`` (the network's downsampling) from ``smallest`` to ``largest``; ties go to the
    smaller tile. Images smaller than ``smallest`` get ``smallest`` (they are padded).
    """
    first = -(-max(smallest, 2 * margin + multiple) // multiple) * multiple
    best, best_cost = first, None
    for tile in range(first, max(first, largest) + 1, multiple):
        cost = len(_axis(shape[0], tile, margin)) * len(_axis(shape[1], tile, margin)) * tile**2
        if best_cost is None or cost < best_cost:
            best, best_cost = tile, cost
    return best


def _batches(tiles: list[Tile], size: int) -> Iterator[list[Tile]]:
    for start in range(0, len(tiles), size):
        yield tiles[start : start + size]


def predict_tiled(
    image: np.ndarray,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    tile: int,
    margin: int,
    batch_size: int = 8,
    pad_value: float = 0.0,
    progress: bool = False,
) -> np.ndarray:
    """Apply ``predict`` to overlapping tiles of a 2-D ``image`` and stitch the result.

    Parameters
    ----------
    image : numpy.ndarray
        ``(height, width)`` float32 (already normalized).
    predict : callable
        Maps a ``(n, 1, tile, tile)`` float32 batch to a ``(n, 1, tile, tile)`` output.
    tile, margin : int
        Tile side and the context trimmed from shared tile edges.
    batch_size : int
        Tiles per call of ``predict``.
    pad_value : float
        Value of padding for images smaller than a tile.
    progress : bool
        Show a progress bar over batches.

    Returns
    -------
    numpy.ndarray
        ``(height, width)`` float32.
    """
    from skysift.progress import progress_iter

    height, width = image.shape
    padded_h, padded_w = max(height, tile), max(width, tile)
    if (padded_h, padded_w) != (height, width):
        padded = np.full((padded_h, padded_w), pad_value, dtype=np.float32)
        padded[:height, :width] = image
    else:
        padded = image
    tiles = tile_grid((height, width), tile=tile, margin=margin)
    output = np.empty((height, width), dtype=np.float32)
    batches = list(_batches(tiles, batch_size))
    for batch in progress_iter(batches, "tiles", enabled=progress):
        stack = np.stack([padded[t.rows, t.cols] for t in batch])[:, np.newaxis]
        result = predict(np.ascontiguousarray(stack, dtype=np.float32))
        for t, out in zip(batch, result[:, 0], strict=True):
            output[t.out_rows, t.out_cols] = out[t.keep_rows, t.keep_cols]
    return output
