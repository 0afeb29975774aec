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


def test_batch_killed_part_way_resumes_without_redoing_or_losing_work(tmp_path):
    """SIGKILL the CLI once the first image is in the manifest, then run it again."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "images"
    for k in range(6):
        simulate_field(
            FieldConfig(survey="meerlicht", size=384, density=40, seed=2_000_611 + k)
        ).write(folder, name=f"night{k}")
    out = tmp_path / "out"
    # a temporary file as a kill during a write leaves it (atomic_write's naming)
    (out / "night5_q").mkdir(parents=True)
    (out / "night5_q" / ".night5_q.ecsv.abc123.part.ecsv").write_text("half a catalog")
    command = [
        sys.executable, "-m", "skysift.cli", "batch", str(folder / "*_q.fits"),
        "--out", str(out), "--workers", "1", "--quiet",
    ]  # fmt: skip
    first = subprocess.Popen(command, start_new_session=True)
    manifest = out / "manifest.json"
    deadline = time.monotonic() + 120

    def done_so_far() -> dict[str, float]:
        images = json.loads(manifest.read_text())["images"] if manifest.exists() else {}
        return {k: v["seconds"] for k, v in images.items() if v["status"] == "done"}

    while time.monotonic() < deadline and first.poll() is None and not done_so_far():
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    done_before = done_so_far()
    assert 1 <= len(done_before) < 6, "the first run must be killed part-way"

    second = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    images = json.loads(manifest.read_text())["images"]
    assert sorted(images) == [f"night{k}_q" for k in range(6)]
    assert all(entry["status"] == "done" for entry in images.values())
    # the images finished before the kill were not processed again
    assert {k: images[k]["seconds"] for k in done_before} == done_before
    assert f"{len(done_before)} already done" in second.stdout
    assert not list(out.rglob("*.part*"))
    table = pyarrow.dataset.dataset(out / "catalogs", partitioning="hive").to_table()
    assert sorted(set(table.column("image").to_pylist())) == sorted(images)


def test_the_batch_command_keeps_dasks_info_messages_off_the_console(monkeypatch):
    """``skysift batch`` lowers ``distributed``'s loggers to warnings after importing it
    (which sets them to INFO), unless ``--verbose`` asked for debugging details."""
    import logging

    from skysift.cli import _quiet_dask

    dask_log = logging.getLogger("distributed")
    monkeypatch.setattr(dask_log, "level", logging.INFO)
    root = logging.getLogger()
    monkeypatch.setattr(root, "level", logging.DEBUG)
    _quiet_dask()
    assert dask_log.level == logging.INFO  # --verbose: Dask's messages stay
    monkeypatch.setattr(root, "level", logging.WARNING)
    _quiet_dask()
    assert dask_log.level == logging.WARNING


def test_output_names_of_images_in_one_file_or_one_file_per_band():
    from skysift.batch import image_name

    assert image_name("data/frame7.fits.fz") == "frame7"
    assert image_name(["t/f42_g.fits", "t/f42_r.fits", "t/f42_z.fits"]) == "f42_grz"
    assert image_name(["g/f42.fits", "r/f42.fits"]) == "f42"
    assert image_name(["f42-g-v2.fits", "f42-r-v2.fits"]) == "f42-gr-v2"


def test_band_groups_pair_each_images_files_and_name_what_is_missing(tmp_path):
    from skysift.batch import band_groups
    from skysift.errors import InvalidParameterError

    for name in ("a_g", "a_r", "a_z", "b_g", "b_r", "b_z", "c_g", "c_r"):
        (tmp_path / f"{name}.fits").write_bytes(b"")
    pattern = str(tmp_path / "[ab]_{band}.fits")
    groups = band_groups([pattern], ["g", "r", "z"])
    assert [[p.split("/")[-1] for p in group] for group in groups] == [
        ["a_g.fits", "a_r.fits", "a_z.fits"],
        ["b_g.fits", "b_r.fits", "b_z.fits"],
    ]
    with pytest.raises(InvalidParameterError, match=r"1 band file\(s\) missing.*c_z.fits"):
        band_groups([str(tmp_path / "*_{band}.fits")], ["g", "r", "z"])
    with pytest.raises(InvalidParameterError, match=r"has no \{band\}"):
        band_groups([str(tmp_path / "*_g.fits")], ["g", "r", "z"])


def test_batch_reads_an_images_bands_from_one_file_each(tmp_path):
    """Each image's g, r, z files are read together: one task, one set of outputs named for
    the image, the three bands in its catalog's run."""
    field = simulate_field(FieldConfig(survey="decals", size=96, density=30, seed=2_000_611))
    paths = field.write(tmp_path / "in", name="tile")
    group = [str(paths[f"image_{band}"]) for band in "grz"]
    summary = run_batch([group], tmp_path / "out", workers=1, progress=False)
    assert summary.done == ["tile_grz"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["images"]["tile_grz"]["image"] == group
    assert (tmp_path / "out" / "tile_grz" / "tile_grz.ecsv").exists()
