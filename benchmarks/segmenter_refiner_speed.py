"""What the mask refiner, the second look and the colour typer cost: the recommended chain
with and without them.

The 2048x2048 SDSS field of ``bench_segmenter.py``'s speed test (seed 1,999,001), segmented
end to end through the ``Segmenter`` with the recommended chain's parts one by one: one
second look (``second_look_reject``) without the mask refiner, the same with it, and
two looks averaged with the refiner, and ``SegmentConfig.recommended()`` itself (that and the
colour typer, session 43), each run twice
(the faster run counts). The field's bands are SDSS g, r, i, on which the ``Segmenter`` leaves
the g, r, z colour typer out; for its cost the typer is made to run, by giving the chain the
same pixels with generic band names (its colours mean nothing there; its time is real).
SEP's background and extraction are timed in the same process as the yardstick (machines are
noisy; the ratio is what travels). Run:
``.venv/bin/python benchmarks/segmenter_refiner_speed.py``. Writes
``benchmarks/results/segmenter_refiner_speed.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: The chains timed: ``SegmentConfig.recommended()`` overrides, by results key.
CHAINS = (
    ("without", {"second_look": "second_look_reject", "mask_refiner": None, "colour_typer": None}),
    ("with", {"second_look": "second_look_reject", "colour_typer": None}),
    ("two_looks", {"colour_typer": None}),
    ("colour_typer", {}),
)
LABELS = {
    "without": "one look, no mask refiner",
    "with": "one look and the mask refiner (session 34's chain)",
    "two_looks": "two looks and the mask refiner (session 38's chain)",
    "colour_typer": "recommended: that and the colour typer (session 43)",
}


def best_seconds(run, repeats: int) -> float:
    """The shortest of ``repeats`` timed calls of ``run``."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    import sep
    import torch

    from skysift.io import atomic_write
    from skysift.segment import SegmentConfig, Segmenter, segment
    from skysift.sim import FieldConfig, simulate_field

    torch.set_num_threads(args.threads)
    field = simulate_field(
        FieldConfig(survey="sdss", size=2048, density=30, seed=1_999_001, central_galaxy="spiral")
    )
    height, width = field.footprints.shape
    fwhm = float(field.psf.fwhm_at((width - 1) / 2, (height - 1) / 2)) / field.psf.pixel_scale
    result: dict = {"threads": args.threads, "repeats": args.repeats}
    unnamed = dataclasses.replace(
        field.image, bands=tuple(f"band{i}" for i in range(field.image.n_bands))
    )
    for name, overrides in CHAINS:
        segmenter = Segmenter(SegmentConfig.recommended(psf_fwhm=fwhm, **overrides))
        image = unnamed if segmenter.colour_typer is not None else field.image
        catalogs = []
        seconds = best_seconds(
            lambda s=segmenter, i=image, out=catalogs: out.append(segment(i, segmenter=s)[0]),
            args.repeats,
        )
        result[name] = {"seconds": seconds, "instances": len(catalogs[-1])}
    band = np.array(field.image.data[1], dtype=np.float32)

    def sep_run() -> None:
        background = sep.Background(band)
        sep.extract(band - background, 1.5, err=background.globalrms, segmentation_map=True)

    result["sep_seconds"] = best_seconds(sep_run, args.repeats)
    for name, _ in CHAINS:
        result[name]["ratio_to_sep"] = result[name]["seconds"] / result["sep_seconds"]
    result["refiner_cost"] = result["with"]["seconds"] / result["without"]["seconds"] - 1.0
    result["second_look_cost"] = result["two_looks"]["seconds"] / result["with"]["seconds"] - 1.0
    result["colour_typer_cost"] = (
        result["colour_typer"]["seconds"] / result["two_looks"]["seconds"] - 1.0
    )
    out = ROOT / "benchmarks" / "results" / "segmenter_refiner_speed.json"
    with atomic_write(out) as tmp:
        tmp.write_text(json.dumps(result, indent=1) + "\n")
    print("| chain | seconds | instances | x SEP |\n|---|---|---|---|")
    for name, _ in CHAINS:
        row = result[name]
        print(
            f"| {LABELS[name]} | {row['seconds']:.1f} | {row['instances']} | "
            f"{row['ratio_to_sep']:.0f} |"
        )
    print(
        f"SEP {result['sep_seconds']:.2f} s; the refiner adds {result['refiner_cost']:.0%}, "
        f"the second look {result['second_look_cost']:.0%}, the colour typer "
        f"{result['colour_typer_cost']:.0%}"
    )


if __name__ == "__main__":
    main()
