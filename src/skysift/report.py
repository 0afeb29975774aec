"""Pictures of a result: overlay PNG, histograms, and one self-contained HTML report.

The report is a single HTML file (images embedded as base64 PNG, a few lines of inline
JavaScript to sort the table), so it can be mailed or archived next to the catalog.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from skysift.image import Image
from skysift.io import atomic_write

__all__ = ["footprint_outlines", "overlay_png", "stage_models", "write_report"]

#: Rows shown in the report's table (the full catalog is in the catalog files).
MAX_TABLE_ROWS = 5000
_TABLE_COLUMNS = (
    "id",
    "x",
    "y",
    "ra",
    "dec",
    "score",
    "snr",
    "flux",
    "p_star",
    "p_shred",
    "morphology",
    "flags",
)


def _figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def overlay_png(
    image: Image, catalog, *, segmentation: np.ndarray | None = None, max_pixels: int = 1600
) -> bytes:
    """PNG bytes of the image (asinh, zscale) with the catalog's sources marked by group
    (:func:`skysift.catalog.source_groups`: star, galaxy, shred, or source when not
    classified; the segmenter's call where it segmented the source), and with a
    ``segmentation`` (labels = catalog ids) each footprint's outline in its source's colour."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from skysift.sim.preview import display_image

    step = max(1, int(np.ceil(max(image.shape) / max_pixels)))
    data = np.asarray(image.data)[:, ::step, ::step]
    shown = display_image(np.nan_to_num(data))
    fig, ax = plt.subplots(figsize=(9, 9 * shown.shape[0] / shown.shape[1]), dpi=100)
    ax.imshow(
        shown,
        origin="lower",
        cmap="gray",
        interpolation="nearest",
        extent=(-0.5, image.shape[1] - 0.5, -0.5, image.shape[0] - 0.5),
    )
    x, y = np.asarray(catalog["x"].value), np.asarray(catalog["y"].value)
    kinds = _kinds(catalog)
    palette = (
        ("star", "#4fc3f7"),
        ("galaxy", "#ffb74d"),
        ("shred", "#ff4081"),
        ("source", "#69f0ae"),
    )
    if segmentation is not None and len(catalog):
        outlines = footprint_outlines(
            np.asarray(segmentation)[::step, ::step], np.asarray(catalog["id"]), kinds, palette
        )
        ax.imshow(
            outlines,
            origin="lower",
            interpolation="nearest",
            extent=(-0.5, image.shape[1] - 0.5, -0.5, image.shape[0] - 0.5),
        )
    for kind, colour in palette:
        chosen = kinds == kind
        if chosen.any():
            ax.scatter(
                x[chosen],
                y[chosen],
                s=30,
                facecolors="none",
                edgecolors=colour,
                linewidths=0.7,
                label=f"{kind} ({chosen.sum()})",
            )
    if len(x):
        ax.legend(loc="upper right", fontsize=8, framealpha=0.6)
    ax.set_xlabel("x (column)")
    ax.set_ylabel("y (row)")
    fig.tight_layout()
    return _figure_bytes(fig)


def footprint_outlines(
    labels: np.ndarray, ids: np.ndarray, kinds: np.ndarray, palette
) -> np.ndarray:
    """An RGBA image of the footprints' outlines (a label's pixels that border another label
    or none), each in the colour of its source's kind; transparent elsewhere."""
    from matplotlib.colors import to_rgba
    from skimage.segmentation import find_boundaries

    edge = find_boundaries(labels, mode="inner", connectivity=1) & (labels > 0)
    colours = {kind: to_rgba(colour) for kind, colour in palette}
    by_id = dict(zip(np.asarray(ids).tolist(), (colours[k] for k in kinds), strict=True))
    table = np.zeros((int(labels.max(initial=0)) + 1, 4), dtype=np.float32)
    for label in np.unique(labels[edge]):
        table[label] = by_id.get(int(label), colours["source"])
    return np.where(edge[..., None], table[labels], np.float32(0.0))


def _kinds(catalog) -> np.ndarray:
    """Each source's group (:func:`skysift.catalog.source_groups`), "source" where none."""
    from skysift.catalog import source_groups

    groups = source_groups(catalog)
    return np.where(groups == "", "source", groups)


def _histograms(catalog) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("snr", "S/N (aperture)", True),
        ("p_star", "P(star)", False),
        ("p_shred", "P(shred)", False),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(14, 3), dpi=100)
    for ax, (name, label, log_scale) in zip(axes, panels, strict=False):
        values = np.asarray(catalog[name], dtype=float) if name in catalog.colnames else []
        values = values[np.isfinite(values)] if len(values) else values
        if len(values):
            if log_scale:
                positive = values[values > 0]
                bins = (
                    np.logspace(
                        np.log10(max(positive.min(), 0.1)), np.log10(positive.max() + 1), 30
                    )
                    if positive.size
                    else 30
                )
                ax.hist(positive, bins=bins, color="#4472c4")
                ax.set_xscale("log")
            else:
                ax.hist(values, bins=20, range=(0, 1), color="#4472c4")
        else:
            ax.text(
                0.5,
                0.5,
                "not measured\n(stage not run)",
                ha="center",
                va="center",
                transform=ax.transAxes,
                color="gray",
            )
        ax.set_xlabel(label)
    kinds, counts = np.unique(_kinds(catalog), return_counts=True)
    axes[3].bar(kinds, counts, color="#ed7d31")
    axes[3].set_xlabel("class")
    fig.tight_layout()
    return _figure_bytes(fig)


def _table_html(catalog) -> str:
    columns = [c for c in _TABLE_COLUMNS if c in catalog.colnames]
    head = "".join(
        f'<th onclick="sortTable({i})">{html.escape(c)}</th>' for i, c in enumerate(columns)
    )
    rows = []
    for row in catalog[:MAX_TABLE_ROWS]:
        cells = []
        for name in columns:
            value = row[name]
            value = getattr(value, "value", value)
            if isinstance(value, float | np.floating):
                text = "" if not np.isfinite(value) else f"{value:.6g}"
            else:
                text = str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table id="catalog"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


_SCRIPT = """
function sortTable(col) {
  const table = document.getElementById('catalog');
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const ascending = table.dataset.sorted !== String(col);
  rows.sort((a, b) => {
    const x = a.cells[col].textContent, y = b.cells[col].textContent;
    const nx = parseFloat(x), ny = parseFloat(y);
    const cmp = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
    return ascending ? cmp : -cmp;
  });
  rows.forEach(r => body.appendChild(r));
  table.dataset.sorted = ascending ? String(col) : '';
}
"""

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.5em; } img { max-width: 100%; }
table { border-collapse: collapse; font-size: 0.85em; }
th { cursor: pointer; background: #eee; position: sticky; top: 0; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
.scroll { max-height: 40em; overflow: auto; }
pre { background: #f6f6f6; padding: 1em; font-size: 0.85em; }
"""


def stage_models(meta) -> dict[str, Any]:
    """The models each stage ran with, from a catalog's metadata: the localizer, the
    star/galaxy classifier, the shred classifier, and the segmenter's chain (each network,
    the PSF FWHM it took and where from, and why a part was left out)."""
    stages: dict[str, Any] = {}
    for stage, key in (
        ("localize", "model"),
        ("classify", "stargalaxy_model"),
        ("shreds", "shred_model"),
    ):
        if key in meta:
            stages[stage] = meta[key]
    if "stargalaxy_out_of_domain" in meta:
        stages["classify"] = {
            "model": meta.get("stargalaxy_model"),
            "out_of_domain": meta["stargalaxy_out_of_domain"],
        }
    segment = {
        ("detector" if key == "segmenter" else key.removeprefix("segmenter_")): value
        for key, value in meta.items()
        if key == "segmenter" or key.startswith("segmenter_")
    }
    if segment:
        stages["segment"] = segment
    return stages


def write_report(
    result, image: Image, path, *, title: str = "skysift report", overwrite: bool = False
) -> Path:
    """Write the self-contained HTML report of a pipeline result."""
    from skysift import __version__

    catalog = result.catalog
    overlay = base64.b64encode(
        overlay_png(image, catalog, segmentation=result.segmentation)
    ).decode()
    histograms = base64.b64encode(_histograms(catalog)).decode()
    models = stage_models(catalog.meta)
    shown = min(len(catalog), MAX_TABLE_ROWS)
    note = (
        ""
        if shown == len(catalog)
        else (f" (first {shown}; the catalog files hold all {len(catalog)})")
    )
    skipped = (
        "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in result.skipped.items())
        or "<li>none</li>"
    )
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_STYLE}</style><script>{_SCRIPT}</script></head><body>
<h1>{html.escape(title)}</h1>
<p>{len(catalog)} sources; image {image.shape[1]} x {image.shape[0]} pixels, bands
{html.escape(", ".join(image.bands))}; skysift {html.escape(__version__)}; timings
{html.escape(json.dumps({k: round(v, 2) for k, v in result.timings.items()}))} s.</p>
<h2>Sources</h2><img alt="overlay" src="data:image/png;base64,{overlay}">
<h2>Distributions</h2><img alt="histograms" src="data:image/png;base64,{histograms}">
<h2>Catalog{html.escape(note)}</h2><p>Click a column header to sort.</p>
<div class="scroll">{_table_html(catalog)}</div>
<h2>Stages skipped</h2><ul>{skipped}</ul>
<h2>Models</h2><pre>{html.escape(json.dumps(models, indent=1, default=str))}</pre>
<h2>Configuration</h2><pre>{html.escape(result.config.to_yaml())}</pre>
</body></html>
"""
    with atomic_write(path, overwrite=overwrite) as tmp:
        tmp.write_text(document)
    return Path(path)
