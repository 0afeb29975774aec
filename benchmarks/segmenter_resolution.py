"""Star/galaxy typing against the galaxy's size, on Burke et al.'s typical fields.

Burke et al.'s figure (``burke_figure.py``) says how well the segmenter's chain ranks stars
and galaxies; this says where its star/galaxy call runs out. Each truth source of a typical
field at S/N >= 20 is found or not by the chain (mask IoU >= 0.5, one to one: the figure's
own matching, ``skysift.evaluate.segmentation.figure_matches``) and, when found, typed a star
or a galaxy. Galaxies are binned by their true half-light radius over the PSF FWHM (each
field is simulated again from its seed to read them), stars stand apart, and both are split
by S/N. A galaxy much smaller than the PSF is a point source to the eye and to any network.

Run: ``.venv/bin/python benchmarks/segmenter_resolution.py --fields 1024`` (held-out test
fields, the recommended chain). Writes
``benchmarks/results/segmenter_resolution_<fields>_<split>.json``,
``docs/benchmarks/segmenter_resolution_<split>.md`` and its plot (``--redraw <results>``
draws them again).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
from burke_figure import CHUNK, chain_parts

from skysift.io import atomic_write

ROOT = Path(__file__).resolve().parents[1]
#: S/N bins (lower edges inclusive), as the figure's cuts 20, 50, 100 split them
SNR_BINS = ((20.0, 50.0), (50.0, 100.0), (100.0, np.inf))
#: galaxy half-light radius / PSF FWHM bin edges
SIZE_EDGES = (0.0, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0, np.inf)
RECOMMENDED = "second_look_reject&second_look_reject_refined@0.27+shred~mask_refiner^colour_typer"


def source_rows(samples, module, *, chain: tuple, split: str) -> list[dict]:
    """Per truth instance of each sample: S/N, star or not, hlr / FWHM, found, typed star."""
    from skysift.evaluate.segmentation import as_catalog, figure_matches
    from skysift.morphology import GalaxyTyper
    from skysift.progress import progress_iter
    from skysift.sim.field import simulate_field
    from skysift.train.segmenter import network_images, predict, refine, sample_targets
    from skysift.train.segmenter_data import typical_field_configs

    classes = module.skysift_config.classes
    star = classes.index("star") + 1
    look, star_fraction, shreds, refiner, colour_typer = chain
    configs = {c.seed: c for c in typical_field_configs(split, len(samples))}
    typer = GalaxyTyper()
    rows = []
    chunks = range(0, len(samples), CHUNK)
    for start in progress_iter(chunks, "resolution chunks"):
        chunk = samples[start : start + CHUNK]
        refined = refine(
            predict(module, network_images(module, chunk)),
            chunk,
            classes,
            galaxy_typer=typer,
            second_look=look,
            star_fraction=star_fraction,
            shreds=shreds,
            mask_refiner=refiner,
            colour_typer=colour_typer,
        )
        for prediction, sample in zip(refined, chunk, strict=True):
            catalog = as_catalog(prediction)
            target = sample_targets(sample["labels"], sample["ids"], sample["classes"])
            # sample_targets keeps the instances with pixels in the label map, in order
            kept = np.flatnonzero(np.isin(sample["ids"], np.unique(sample["labels"])))
            (matched,), _ = figure_matches([catalog], [target], unmasked=[sample["unmasked"]])
            detection_of = {int(t): d for d, t in enumerate(matched) if t >= 0}
            truth = simulate_field(configs[int(sample["seed"])]).truth
            row_of = {int(i): k for k, i in enumerate(np.asarray(truth["id"]))}
            labels = np.asarray(catalog["labels"])
            for t, k in enumerate(kept):
                row = row_of[int(sample["ids"][k])]
                detection = detection_of.get(t)
                rows.append(
                    {
                        "snr": float(sample["snr"][k]),
                        "star": bool(sample["classes"][k] == star),
                        "size": float(truth["hlr"][row].value / truth["psf_fwhm"][row].value),
                        "found": detection is not None,
                        "typed_star": detection is not None and bool(labels[detection] == star),
                    }
                )
    return rows


def tabulate(rows: list[dict]) -> dict:
    """Counts per S/N bin: stars, and galaxies per size bin (truth, found, typed star)."""
    snr = np.array([r["snr"] for r in rows])
    star = np.array([r["star"] for r in rows])
    size = np.array([r["size"] for r in rows])
    found = np.array([r["found"] for r in rows])
    typed_star = np.array([r["typed_star"] for r in rows])

    def counts(chosen: np.ndarray) -> dict:
        return {
            "truth": int(chosen.sum()),
            "found": int((chosen & found).sum()),
            "typed_star": int((chosen & typed_star).sum()),
        }

    table = []
    for low, high in SNR_BINS:
        in_bin = (snr >= low) & (snr < high)
        galaxies = []
        for small, large in itertools.pairwise(SIZE_EDGES):
            chosen = in_bin & ~star & (size >= small) & (size < large)
            galaxies.append({"size_min": small, "size_max": _open(large), **counts(chosen)})
        table.append(
            {
                "snr_min": low,
                "snr_max": _open(high),
                "stars": counts(in_bin & star),
                "galaxies": galaxies,
            }
        )
    return {"bins": table}


def _open(edge: float) -> float | None:
    """An upper bin edge for the results JSON: None for an open bin (strict JSON has no inf)."""
    return None if np.isinf(edge) else float(edge)


def _share(part: int, whole: int) -> str:
    return "-" if whole == 0 else f"{part / whole:.3f}"


def _edge(value: float | None) -> str:
    return "inf" if value is None else f"{value:g}"


def markdown(result: dict, plot_name: str) -> str:
    lines = [
        "# Star/galaxy typing against the galaxy's size",
        "",
        f"{result['fields']} typical fields ({result['split']} seeds), chain "
        f"`{result['model']}` + `{result['chain']}`. Made by `{result['command']}` "
        f"in {result['seconds'] / 60:.0f} min.",
        "",
        "Every truth source at S/N >= 20: found (mask IoU >= 0.5, the matching of Burke et "
        "al.'s figure) and, if found, typed a star or a galaxy. Galaxies are binned by their "
        "true half-light radius over the PSF FWHM.",
        "",
        f"![typing against size](../images/{plot_name})",
        "",
    ]
    for entry in result["bins"]:
        stars = entry["stars"]
        lines += [
            f"## S/N {_edge(entry['snr_min'])} to {_edge(entry['snr_max'])}",
            "",
            "| truth | sources | found | found, typed a star | found, typed a galaxy |",
            "|---|---|---|---|---|",
            f"| stars | {stars['truth']} | {_share(stars['found'], stars['truth'])} | "
            f"{_share(stars['typed_star'], stars['found'])} | "
            f"{_share(stars['found'] - stars['typed_star'], stars['found'])} |",
        ]
        for cell in entry["galaxies"]:
            lines.append(
                f"| galaxies, hlr / FWHM {_edge(cell['size_min'])}-{_edge(cell['size_max'])} | "
                f"{cell['truth']} | {_share(cell['found'], cell['truth'])} | "
                f"{_share(cell['typed_star'], cell['found'])} | "
                f"{_share(cell['found'] - cell['typed_star'], cell['found'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Share of found galaxies typed a galaxy against size; stars' share as a marker at 0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for k, entry in enumerate(result["bins"]):
        cells = [c for c in entry["galaxies"] if c["found"] >= 10]
        middle = [np.sqrt(max(c["size_min"], 0.05) * min(c["size_max"] or 2.0, 2.0)) for c in cells]
        share = [1 - c["typed_star"] / c["found"] for c in cells]
        label = f"S/N {_edge(entry['snr_min'])}-{_edge(entry['snr_max'])}"
        (line,) = ax.plot(middle, share, marker="o", label=f"galaxies, {label}")
        stars = entry["stars"]
        if stars["found"]:
            ax.plot(
                [0.03 * (1 + 0.15 * k)],
                [1 - stars["typed_star"] / stars["found"]],
                marker="*",
                markersize=11,
                color=line.get_color(),
                linestyle="none",
            )
    ax.set_xscale("log")
    ax.set_xlabel("truth half-light radius / PSF FWHM (stars: the star markers at the left)")
    ax.set_ylabel("found sources typed a galaxy")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fields", type=int, default=1024)
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--model", default="segmenter_psf_typical")
    parser.add_argument("--chain", default=RECOMMENDED, help="A burke_figure.py look spec.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--redraw", type=Path, help="Draw the page and plot from a results JSON.")
    args = parser.parse_args()
    if args.redraw:
        publish(json.loads(args.redraw.read_text()))
        return
    import torch

    from skysift.models.registry import load_model
    from skysift.train.segmenter import load_images

    torch.set_num_threads(args.threads)
    directory = ROOT / "data" / f"segmenter_typical_{args.split}_{args.fields}"
    if not directory.exists():
        sys.exit(f"{directory} is missing: burke_figure.py --fields {args.fields} makes it")
    chain = chain_parts(args.chain)
    module, _ = load_model(args.model)
    started = time.perf_counter()
    rows = source_rows(load_images(str(directory)), module, chain=chain, split=args.split)
    result = {
        "fields": args.fields,
        "split": args.split,
        "model": args.model,
        "chain": args.chain,
        "command": " ".join(["python benchmarks/segmenter_resolution.py", *sys.argv[1:]]),
        "seconds": time.perf_counter() - started,
        **tabulate(rows),
    }
    stem = f"segmenter_resolution_{args.fields}_{args.split}"
    with atomic_write(ROOT / "benchmarks" / "results" / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(result, indent=1, default=float) + "\n")
    publish(result)


def publish(result: dict) -> None:
    """Write the page and its plot (``docs/benchmarks/segmenter_resolution_<split>``)."""
    page_name = f"segmenter_resolution_{result['split']}"
    plot_name = f"{page_name}_typing.png"
    plot(result, ROOT / "docs" / "images" / plot_name)
    page = markdown(result, plot_name)
    with atomic_write(ROOT / "docs" / "benchmarks" / f"{page_name}.md") as tmp:
        tmp.write_text(page)
    print(page)


if __name__ == "__main__":
    main()
