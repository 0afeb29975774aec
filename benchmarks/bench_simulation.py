"""Time the simulator on the issue's reference fields (2560x2560, crowded) and record it.

Run: ``.venv/bin/python benchmarks/bench_simulation.py`` (or ``make bench``). Results are
printed and written to ``benchmarks/results/simulation.json``; docs/simulation.md quotes them.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

from skysift.sim import FieldConfig, simulate_field

CASES = [
    # (label, config)
    (
        "meerlicht 2560^2, 100/arcmin^2, 90% stars (crowded stellar field)",
        FieldConfig(survey="meerlicht", size=2560, density=100, seed=2_000_901, star_fraction=0.9),
    ),
    (
        "meerlicht 2560^2, 100/arcmin^2, 60% stars (default mix, galaxy-heavy)",
        FieldConfig(survey="meerlicht", size=2560, density=100, seed=2_000_902),
    ),
    (
        "meerlicht 2560^2, 5/arcmin^2 (sparse)",
        FieldConfig(survey="meerlicht", size=2560, density=5, seed=2_000_903),
    ),
    (
        "decals 1024^2 g,r,z, 30/arcmin^2",
        FieldConfig(survey="decals", size=1024, density=30, seed=2_000_904),
    ),
]


def main() -> None:
    results = []
    for label, config in CASES:
        start = time.perf_counter()
        field = simulate_field(config)
        seconds = time.perf_counter() - start
        results.append(
            {
                "case": label,
                "seconds": round(seconds, 1),
                "n_sources": field.info["n_sources"],
                "n_artifacts": field.info["n_artifacts"],
            }
        )
        print(f"{seconds:7.1f} s  {field.info['n_sources']:7d} sources  {label}", flush=True)
    out = Path(__file__).parent / "results" / "simulation.json"
    out.write_text(
        json.dumps(
            {
                "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                "results": results,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
