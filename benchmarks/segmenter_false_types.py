"""Which galaxies does the segmenter draw too wide? (diagnostic, validation)

Reads a ``segmenter_limits.py --list`` result on the typical validation fields and, for the
false galaxy detections above the 80 % recall rank whose mask overlaps a truth instance with
IoU 0.2-0.5, simulates their fields again to name the truth source under each detection
(the footprint's owner at the detection's centre, else the nearest source): its galaxy type,
and whether an artifact lies within 12 pixels. Beside them, the share of each galaxy type
among the truth galaxies at or above the same S/N in the first ``--base-fields`` fields.

Run after ``segmenter_limits.py ... --fields 1024 --list``:
``.venv/bin/python benchmarks/segmenter_false_types.py
benchmarks/results/<chain>_limits_typical_1024.json``. Prints a table.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict

import numpy as np
from segmenter_profile_masks import column_values

from skysift.sim.field import simulate_field
from skysift.train.segmenter_data import typical_field_configs

KIND = "mask IoU 0.2-0.5"
ARTIFACT_RADIUS = 12


def source_under(field, x: float, y: float) -> int:
    """Row of ``field.truth`` under ``(x, y)``: the footprint's owner, else the nearest."""
    ids = column_values(field.truth["id"])
    owner = int(field.footprints[round(y), round(x)])
    if owner > 0:
        return int(np.flatnonzero(ids == owner)[0])
    dx = column_values(field.truth["x"]) - x
    dy = column_values(field.truth["y"]) - y
    return int(np.argmin(np.hypot(dx, dy)))


def false_types(result: dict, *, snr_min: float) -> dict:
    """Galaxy types (and artifacts nearby) of the IoU 0.2-0.5 false galaxy detections."""
    (row,) = [c for c in result["cuts"] if c["snr_min"] == snr_min]
    listed = row["false_above_80_recall"]["galaxy"]["detections"]
    detections = [d for d in listed if d["kind"] == KIND]
    configs = {c.seed: c for c in typical_field_configs("validation", result["images"])}
    by_seed = defaultdict(list)
    for d in detections:
        by_seed[d["seed"]].append(d)
    types, near_artifact = Counter(), 0
    for seed, found in by_seed.items():
        field = simulate_field(configs[seed])
        for d in found:
            types[str(field.truth["galaxy_type"][source_under(field, d["x"], d["y"])])] += 1
            cx, cy = round(d["x"]), round(d["y"])
            box = field.artifacts.label_map[
                max(cy - ARTIFACT_RADIUS, 0) : cy + ARTIFACT_RADIUS + 1,
                max(cx - ARTIFACT_RADIUS, 0) : cx + ARTIFACT_RADIUS + 1,
            ]
            near_artifact += bool((box > 0).any())
    return {"detections": len(detections), "types": dict(types), "near_artifact": near_artifact}


def base_rates(fields: int, *, snr_min: float) -> dict[str, float]:
    """Share of each galaxy type among the truth galaxies (no clumps) with S/N >= ``snr_min``
    in the first ``fields`` typical validation fields."""
    counts = Counter()
    for config in typical_field_configs("validation", fields):
        truth = simulate_field(config).truth
        chosen = (
            (column_values(truth["snr"]) >= snr_min)
            & (column_values(truth["class"]) == "galaxy")
            & ~column_values(truth["is_shred"]).astype(bool)
        )
        counts.update(str(t) for t in column_values(truth["galaxy_type"])[chosen])
    total = sum(counts.values())
    return {kind: n / total for kind, n in counts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("limits", help="A segmenter_limits.py --list result (typical fields).")
    parser.add_argument("--snr", type=float, default=20.0)
    parser.add_argument("--base-fields", type=int, default=128)
    args = parser.parse_args()
    with open(args.limits) as handle:
        result = json.load(handle)
    if result.get("image_set") != "typical":
        parser.error(f"{args.limits}: not a result on the typical fields")
    found = false_types(result, snr_min=args.snr)
    base = base_rates(args.base_fields, snr_min=args.snr)
    print(
        f"{found['detections']} false galaxy detections with mask IoU 0.2-0.5 above the 80 % "
        f"rank at S/N >= {args.snr:g}; {found['near_artifact']} within {ARTIFACT_RADIUS} px "
        "of an artifact\n"
    )
    print(
        "| truth source | detections | share | share of galaxies "
        f"(first {args.base_fields} fields) |"
    )
    print("|---|---|---|---|")
    for kind, n in sorted(found["types"].items(), key=lambda item: -item[1]):
        share = base.get(kind)
        print(
            f"| {kind} | {n} | {n / found['detections']:.1%} | "
            + ("-" if share is None else f"{share:.1%}")
            + " |"
        )


if __name__ == "__main__":
    main()
