"""Time and peak memory of ``skysift run`` on a 10240 x 10240 single-band image.

Run: ``.venv/bin/python benchmarks/bench_large_image.py``. The image (400 MB of float32) is a
simulated 2560 x 2560 MeerLICHT field at 40 sources/arcmin^2 repeated 4 x 4 (simulating 10k^2
directly would take a quarter of an hour and measures the simulator, not the pipeline). Each
configuration runs in its own process under ``/usr/bin/time -v`` so the peak resident set is the
whole process's. Results: ``benchmarks/results/large_image.json``.
"""

from __future__ import annotations

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


def measure(image: Path, out: Path, stages: str) -> dict:
    command = [
        "/usr/bin/time",
        "-v",
        str(SKYSIFT),
        "run",
        str(image),
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
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "big.fits"
        make_image(image)
        for stages in ("localize", "localize,classify"):
            rows.append(measure(image, Path(tmp) / "out", stages))
            print(rows[-1], flush=True)
    result = {"date": time.strftime("%Y-%m-%d"), "image": "10240x10240 float32", "runs": rows}
    out = ROOT / "benchmarks" / "results" / "large_image.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
