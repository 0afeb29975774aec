"""Resident memory per phase of ``skysift run`` on the 10240 x 10240 benchmark image.

Run: ``.venv/bin/python benchmarks/memory_phases.py [--stages localize,classify]``. A thread
samples the process's resident set every 10 ms while the main pipeline functions are wrapped
to print, for each call, the resident memory before it, the highest value seen during it and
the value after it (GB). Nested calls reset the running peak, so read each line on its own;
``bench_large_image.py`` gives the whole process's peak. Where the numbers go: the "Large
images" section of docs/usage.md.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def resident_gb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024**2
    return float("nan")


class PhaseRecorder:
    """Wraps functions to report resident memory before, during (peak) and after each call."""

    def __init__(self) -> None:
        self.peak = 0.0
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, resident_gb())
            time.sleep(0.01)

    def wrap(self, owner, name: str) -> None:
        function = getattr(owner, name)

        @functools.wraps(function)
        def recorded(*args, **kwargs):
            before = self.peak = resident_gb()
            result = function(*args, **kwargs)
            label = f"{getattr(owner, '__name__', owner)}.{name}"
            print(
                f"{label:45s} before {before:.2f}  peak {self.peak:.2f}  after "
                f"{resident_gb():.2f} GB",
                flush=True,
            )
            return result

        setattr(owner, name, recorded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--stages", default="localize,classify")
    args = parser.parse_args()

    from bench_large_image import make_image

    import skysift.io
    import skysift.localizer
    import skysift.pipeline
    import skysift.result
    import skysift.stargalaxy
    import skysift.tiling
    from skysift.config import PipelineConfig

    recorder = PhaseRecorder()
    for owner, name in [
        (skysift.io, "read_image"),
        (skysift.localizer.Localizer, "detection_image"),
        (skysift.tiling, "predict_tiled"),
        (skysift.localizer.Localizer, "peaks"),
        (skysift.localizer, "_measure"),
        (skysift.stargalaxy, "classify_stars"),
        (skysift.result.Result, "write"),
    ]:
        recorder.wrap(owner, name)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.fits"
        make_image(path)
        print(f"start {resident_gb():.2f} GB (after simulating the image)", flush=True)
        image = skysift.io.read_image(path)
        config = PipelineConfig(stages=tuple(args.stages.split(",")))
        result = skysift.pipeline.Pipeline(config)(image)
        result.write(Path(tmp) / "out")
        print(f"{len(result.catalog)} sources; last sampled peak {recorder.peak:.2f} GB")


if __name__ == "__main__":
    main()
