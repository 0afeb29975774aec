"""Time and peak memory of ``skysift run`` on large images.

Run: ``.venv/bin/python benchmarks/bench_large_image.py [--cases single segment]``.

* ``single``: a 10240 x 10240 single-band image (400 MB of float32), a simulated 2560 x 2560
  MeerLICHT field at 40 sources/arcmin^2 repeated 4 x 4 (simulating 10k^2 directly would take a
  quarter of an hour and measures the simulator, not the pipeline), localized, then localized
  and classified.
* ``segment``: a simulated 4096 x 4096 DECaLS g, r, z field (a survey CCD's size; Burke et
  al.'s typical mix, 27 % stars) through every stage, the segment stage being the recommended
  chain.

Each configuration runs in its own process under ``/usr/bin/time -v`` so the peak resident set
is the whole process's. Results: ``benchmarks/results/large_image.json`` (a case not run keeps
its earlier rows).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SKYSIFT = Path(sys.executable).with_name("skysift")


def make_image(path: Path, *, tile: int = 2560, repeat: int = 4) -> None:
    from astropy.io import fits

    from skysift.sim import FieldConfig, simulate_field

    field = simulate_field(FieldConfig(survey="meerlicht", size=tile, density=40, seed=2_100_000))
    block = np.asarray(field.image.data[0], dtype=np.float32)
    fits.PrimaryHDU(np.tile(block, (repeat, repeat))).writeto(path)


def make_bands(directory: Path, *, size: int = 4096) -> list[Path]:
    """A simulated DECaLS g, r, z field of ``size``² pixels at Burke et al.'s typical mix, one
    FITS file per band."""
    from skysift.sim import FieldConfig, simulate_field

    field = simulate_field(
        FieldConfig(survey="decals", size=size, density=30, star_fraction=0.27, seed=2_100_001)
    )
    paths = field.write(directory, name="field")
    return [Path(paths[f"image_{band}"]) for band in ("g", "r", "z")]


def measure(image: Path | list[Path], out: Path, stages: str) -> dict:
    images = [str(path) for path in (image if isinstance(image, list) else [image])]
    command = [
        "/usr/bin/time",
        "-v",
        str(SKYSIFT),
        "run",
        *images,
        "--out",
        str(out),
        "--stages",
        stages,
        "--quiet",
        "--overwrite",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)[1])
    return {"stages": stages, "seconds": seconds, "peak_rss_gb": peak_kb / 1024**2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=("single", "segment"), default=None)
    cases = parser.parse_args().cases or ["single", "segment"]
    out = ROOT / "benchmarks" / "results" / "large_image.json"
    result = json.loads(out.read_text()) if out.exists() else {}
    if "runs" in result:  # the single-band case's rows, before the segment case was added
        result = {"single": {k: result[k] for k in ("date", "image", "runs")}}
    with tempfile.TemporaryDirectory() as tmp:
        if "single" in cases:
            image = Path(tmp) / "big.fits"
            make_image(image)
            rows = []
            for stages in ("localize", "localize,classify"):
                rows.append(measure(image, Path(tmp) / "out", stages))
                print(rows[-1], flush=True)
            result["single"] = {
                "date": time.strftime("%Y-%m-%d"),
                "image": "10240x10240 float32",
                "runs": rows,
            }
        if "segment" in cases:
            bands = make_bands(Path(tmp) / "field")
            row = measure(bands, Path(tmp) / "out", "localize,classify,shreds,segment")
            print(row, flush=True)
            result["segment"] = {
                "date": time.strftime("%Y-%m-%d"),
                "image": "4096x4096 DECaLS g, r, z, float32",
                "runs": [row],
            }
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
