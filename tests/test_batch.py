"""Batch runs on a LocalCluster: failures stay local, re-runs resume without redoing work."""

from __future__ import annotations

import json

import pyarrow.dataset
import pytest

from skysift.batch import run_batch
from skysift.sim import FieldConfig, simulate_field


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    paths = []
    for k in range(3):
        field = simulate_field(
            FieldConfig(survey="meerlicht", size=96, density=40, seed=2_000_601 + k)
        )
        paths.append(field.write(folder, name=f"frame{k}")["image_q"])
    corrupt = folder / "frame9_q.fits"
    corrupt.write_bytes(paths[0].read_bytes()[:5000])  # truncated
    return [*paths, corrupt]


def test_batch_with_a_corrupt_file_then_resume(images, tmp_path):
    out = tmp_path / "batch"
    # an interrupted run: only the first two images got processed
    first = run_batch(images[:2], out, workers=2, progress=False)
    assert sorted(first.done) == ["frame0_q", "frame1_q"]
    stamps = {p: p.stat().st_mtime_ns for p in (out / "frame0_q").iterdir()}

    summary = run_batch(images, out, workers=2, progress=False)
    assert sorted(summary.skipped) == ["frame0_q", "frame1_q"]  # nothing processed twice
    assert summary.done == ["frame2_q"]
    assert list(summary.failed) == ["frame9_q"]
    assert "truncated" in summary.failed["frame9_q"]
    assert not summary.ok
    assert {p: p.stat().st_mtime_ns for p in (out / "frame0_q").iterdir()} == stamps

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["images"]["frame9_q"]["status"] == "failed"
    assert manifest["images"]["frame2_q"]["n_sources"] > 0
    dataset = pyarrow.dataset.dataset(out / "catalogs", partitioning="hive")
    table = dataset.to_table()
    assert set(table.column("image").to_pylist()) == {"frame0_q", "frame1_q", "frame2_q"}
    assert not list(out.rglob("*.part*"))
