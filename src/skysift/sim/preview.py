"""PNG previews of simulated fields (asinh stretch, zscale limits; colour for three bands)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from skysift.sim.field import SimulatedField

__all__ = ["display_image", "preview_png"]

_MARKERS = {
    "star": ("o", "#4fc3f7"),
    "galaxy": ("s", "#ffb74d"),
    "shred": ("x", "#ff1744"),
}


def display_image(data: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Stretch ``(bands, h, w)`` pixels to an RGB or grey ``[0, 1]`` array for display.

    One band is shown in grey; three or more as RGB (reddest band red). Each band is
    background-subtracted (``background`` if given, else its median), scaled to zscale limits
    and asinh-stretched.
    """
    from astropy.visualization import AsinhStretch, ZScaleInterval

    planes = []
    for b in range(data.shape[0]):
        band = np.asarray(data[b], dtype=np.float32)
        level = background[b] if background is not None else np.nanmedian(band)
        band = band - level
        lo, hi = ZScaleInterval().get_limits(band[np.isfinite(band)])
        hi = max(hi, lo + 1e-6) * 8.0  # leave room for bright sources before the asinh bends
        scaled = np.clip((band - lo) / (hi - lo), 0, 1)
        planes.append(AsinhStretch(a=0.05)(scaled))
    if len(planes) >= 3:
        return np.dstack([planes[2], planes[1], planes[0]])
    return planes[0]


def preview_png(
    field: SimulatedField,
    path,
    *,
    mark: tuple[str, ...] = (),
    crop: tuple[slice, slice] | None = None,
    title: str | None = None,
    dpi: int = 100,
) -> None:
    """Save a preview of a field's image.

    Parameters
    ----------
    field : SimulatedField
    path : path
        PNG file to write.
    mark : tuple of str
        Truth to overlay: any of ``"star"``, ``"galaxy"``, ``"shred"``, ``"artifacts"``.
    crop : (slice, slice), optional
        Rows and columns to show.
    title : str, optional
    dpi : int
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = crop or (slice(None), slice(None))
    data = np.asarray(field.image.data)[:, rows, cols]
    background = np.asarray(field.background)[:, rows, cols]
    shown = display_image(data, background)
    height, width = shown.shape[:2]
    size = min(12.0, max(4.0, width / dpi))
    fig, ax = plt.subplots(figsize=(size, size * height / width), dpi=dpi)
    ax.imshow(shown, origin="lower", cmap="gray", interpolation="nearest")
    row0 = rows.start or 0
    col0 = cols.start or 0
    truth = field.truth
    for kind in mark:
        if kind == "artifacts":
            ax.contour(
                field.artifacts.label_map[rows, cols] > 0,
                levels=[0.5],
                colors="#e040fb",
                linewidths=0.6,
            )
            continue
        if kind == "shred":
            selected = np.asarray(truth["is_shred"])
        else:
            selected = (np.asarray(truth["class"]) == kind) & ~np.asarray(truth["is_shred"])
        marker, colour = _MARKERS[kind]
        x = np.asarray(truth["x"])[selected] - col0
        y = np.asarray(truth["y"])[selected] - row0
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        style = {"c": colour} if marker == "x" else {"facecolors": "none", "edgecolors": colour}
        ax.scatter(x[inside], y[inside], s=40, marker=marker, linewidths=0.8, label=kind, **style)
    if mark and any(k != "artifacts" for k in mark):
        ax.legend(loc="upper right", fontsize=8, framealpha=0.6)
    ax.set_xlabel("x (column)")
    ax.set_ylabel("y (row)")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
