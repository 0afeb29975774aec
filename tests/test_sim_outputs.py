"""Writing fields to disk, datasets on disk, presets and seeds."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable

from skysift import read_image
from skysift.errors import InvalidParameterError
from skysift.normalization import robust_level_scale
from skysift.sim import PRESETS, FieldConfig, point_source_depth, seed_role, simulate_field
from skysift.sim.dataset import LocalizerPatches, dataset_configs, iter_shards, write_dataset
from skysift.sim.seeds import check_seed_role, dataset_seeds


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    field = simulate_field(FieldConfig(survey="decals", size=96, density=40, seed=2_000_301))
    out = tmp_path_factory.mktemp("field")
    return field, field.write(out), out


def test_written_images_read_back_with_wcs_and_keywords(written):
    field, paths, _ = written
    image = read_image([paths["image_g"], paths["image_r"], paths["image_z"]])
    assert image.bands == ("g", "r", "z")
    np.testing.assert_array_equal(image.data, field.image.data)
    assert image.pixel_scale == pytest.approx(0.262)
    header = image.header
    assert header["SIMSURV"] == "decals"
    assert header["SIMSEED"] == 2_000_301
    assert header["GAIN"] == field.preset.gain
    assert header["BUNIT"] == "adu"
    # truth sky positions agree with the written WCS
    truth = QTable.read(paths["truth"], format="ascii.ecsv")
    sky = image.wcs.pixel_to_world(truth["x"], truth["y"])
    np.testing.assert_allclose(sky.ra.deg, truth["ra"].value, atol=1e-9)
    assert truth["hlr"].unit == "arcsec"
    assert truth["flux_r"].unit == "adu"


def test_masks_file_and_config_round_trip(written):
    field, paths, _ = written
    with fits.open(paths["masks"]) as hdul:
        names = [hdu.name for hdu in hdul]
        assert {"FOOTPRINTS", "LOCMASK", "ARTIFACTS", "COSMIC_RAY", "SATELLITE_TRAIL"} <= set(names)
        np.testing.assert_array_equal(hdul["FOOTPRINTS"].data, field.footprints)
        np.testing.assert_array_equal(hdul["LOCMASK"].data.astype(bool), field.localization_mask)
    config = json.loads(paths["config"].read_text())
    rebuilt = FieldConfig(
        **{
            **config,
            "size": tuple(config["size"]),
            "galaxy_mix": tuple(tuple(p) for p in config["galaxy_mix"]),
        }
    )
    assert rebuilt == field.config
    assert paths["preview"].stat().st_size > 1000


def test_existing_outputs_are_not_overwritten(written):
    field, _, out = written
    with pytest.raises(FileExistsError, match="already exist"):
        field.write(out)
    field.write(out, overwrite=True)


def test_presets_reach_their_published_depths():
    for preset in PRESETS.values():
        for band in preset.bands:
            depth = point_source_depth(preset, band.name)
            assert depth == pytest.approx(band.reference_depth, abs=0.3), (preset.name, band)


def test_seed_roles():
    assert seed_role(0) == "train"
    assert seed_role(950_000) == "validation"
    assert seed_role(1_500_000) == "test"
    assert seed_role(2_000_000) == "free"
    check_seed_role([1, 2, 3], "train")
    with pytest.raises(InvalidParameterError, match=r"not train seeds.*a test seed"):
        check_seed_role([1, 1_000_001], "train")


def test_dataset_seeds_scale_offsets_into_the_short_validation_range():
    assert dataset_seeds("train", 3, offset=400_000) == range(400_000, 400_003)
    assert dataset_seeds("test", 3, offset=400_000) == range(1_400_000, 1_400_003)
    assert dataset_seeds("validation", 3, offset=400_000) == range(940_000, 940_003)
    with pytest.raises(InvalidParameterError, match="past the validation range"):
        dataset_seeds("validation", 20_000, offset=900_000)
    with pytest.raises(InvalidParameterError, match="role must be one of"):
        dataset_seeds("tuning", 3)


def test_every_models_datasets_stay_in_their_role_and_apart():
    """Each model's dataset builders, at the sizes their trainers use, draw seeds of their
    role only, and no two datasets of one role share a seed (a validation set on test seeds,
    or one model's validation on another's test images, would leak)."""
    from skysift.train.fields import localizer_field_configs
    from skysift.train.morphology import morphology_field_configs
    from skysift.train.segmenter_data import segmenter_field_configs, typical_field_configs
    from skysift.train.stargalaxy_data import stargalaxy_field_configs

    builders = {
        "localizer": lambda role: localizer_field_configs(role, 200),
        "segmenter": lambda role: segmenter_field_configs(role, 1500),
        "typical": lambda role: typical_field_configs(role, 600),
        "morphology": lambda role: morphology_field_configs(role, 3000),
        "morphology+stars": lambda role: morphology_field_configs(role, 1200, with_stars=True),
        "stargalaxy": lambda role: stargalaxy_field_configs(role, 150),
    }
    every = {}
    for role in ("train", "validation", "test"):
        for name, build in builders.items():
            seeds = [c.seed for c in build(role)]
            check_seed_role(seeds, role)
            every[(role, name)] = set(seeds)
    names = sorted(every)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not every[a] & every[b], (a, b)


def test_robust_level_scale_ignores_sources_and_nans(rng):
    data = rng.normal(10.0, 2.0, (200, 200)).astype(np.float32)
    data[50:60, 50:60] = 1e5
    data[0, :] = np.nan
    level, scale = robust_level_scale(data)
    assert level == pytest.approx(10.0, abs=0.05)
    assert scale == pytest.approx(2.0, rel=0.05)


def test_dataset_refuses_a_directory_written_by_another_extractor(tmp_path):
    configs = [FieldConfig(survey="meerlicht", size=64, density=30, seed=11)]
    write_dataset(tmp_path, configs, LocalizerPatches(size=32, stride=32), progress=False)
    with pytest.raises(InvalidParameterError, match="written by LocalizerPatches"):
        write_dataset(tmp_path, configs, LocalizerPatches(size=64, stride=64), progress=False)


def test_dataset_refuses_to_mix_in_other_fields(tmp_path):
    """A directory is one dataset: shards of other seeds, or of the same seed simulated with
    other settings, are refused instead of being read back with the new ones."""
    extract = LocalizerPatches(size=32, stride=32)
    config = FieldConfig(survey="meerlicht", size=64, density=30, seed=11)
    write_dataset(tmp_path, [config], extract, progress=False)
    other_seed = dataclasses.replace(config, seed=12)
    with pytest.raises(InvalidParameterError, match=r"not asked for \(e.g. seed 11\)"):
        write_dataset(tmp_path, [other_seed], extract, progress=False)
    denser = dataclasses.replace(config, density=60)
    with pytest.raises(InvalidParameterError, match="other settings"):
        write_dataset(tmp_path, [denser], extract, progress=False)
    assert write_dataset(tmp_path, [config, other_seed], extract, progress=False)["n_samples"] == 8
    # each field's settings read back by seed, as the manifest records them
    recorded = dataset_configs(tmp_path)
    assert sorted(recorded) == [11, 12]
    assert recorded[12] == json.loads(json.dumps(other_seed.to_dict()))
    with pytest.raises(InvalidParameterError, match="not a skysift dataset"):
        dataset_configs(tmp_path / "nothing")


def test_dataset_may_hold_more_fields_for_readers_of_named_seeds(tmp_path):
    """With ``extra_fields`` a directory holding a superset is finished, not refused, and
    keeps its other fields; other settings for an asked-for seed are refused still."""
    extract = LocalizerPatches(size=32, stride=32)
    config = FieldConfig(survey="meerlicht", size=64, density=30, seed=11)
    other_seed = dataclasses.replace(config, seed=12)
    write_dataset(tmp_path, [config, other_seed], extract, progress=False)
    fewer = write_dataset(tmp_path, [other_seed], extract, progress=False, extra_fields=True)
    assert sorted(entry["seed"] for entry in fewer["shards"]) == [11, 12]
    with pytest.raises(InvalidParameterError, match="other settings"):
        write_dataset(
            tmp_path,
            [dataclasses.replace(config, density=60)],
            extract,
            progress=False,
            extra_fields=True,
        )


def test_dataset_written_before_a_setting_existed_reads_as_its_default(tmp_path):
    """A shard recorded without a setting added later was simulated as its default does."""
    extract = LocalizerPatches(size=32, stride=32)
    config = FieldConfig(survey="meerlicht", size=64, density=30, seed=11)
    write_dataset(tmp_path, [config], extract, progress=False)
    manifest_path = tmp_path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest["shards"][0]["config"]["clumps_in_footprints"]
    manifest_path.write_text(json.dumps(manifest))
    assert write_dataset(tmp_path, [config], extract, progress=False)["n_samples"] == 4
    with_clumps = dataclasses.replace(config, clumps_in_footprints=True)
    with pytest.raises(InvalidParameterError, match="other settings"):
        write_dataset(tmp_path, [with_clumps], extract, progress=False)


def test_dataset_shards_resume_without_redoing(tmp_path, monkeypatch):
    configs = [FieldConfig(survey="meerlicht", size=64, density=30, seed=s) for s in (11, 12)]
    extract = LocalizerPatches(size=32, stride=32)
    manifest = write_dataset(tmp_path, configs[:1], extract, progress=False)
    assert manifest["n_samples"] == 4
    first_shard = tmp_path / manifest["shards"][0]["file"]
    stamp = first_shard.stat().st_mtime_ns

    calls = []
    import skysift.sim.dataset as dataset

    original = dataset.simulate_field
    monkeypatch.setattr(dataset, "simulate_field", lambda c: calls.append(c.seed) or original(c))
    manifest = write_dataset(tmp_path, configs, extract, progress=False)
    assert calls == [12]  # the finished field was skipped
    assert first_shard.stat().st_mtime_ns == stamp
    assert manifest["n_samples"] == 8
    shards = list(iter_shards(tmp_path))
    assert [s["seed"][0] for s in shards] == [11, 12]
    sample = shards[0]
    assert sample["image"].shape == (4, 1, 32, 32)
    assert sample["target"].shape == (4, 32, 32)
    assert sample["level"].shape == (4, 1)
    assert not list(tmp_path.glob("*.part*"))


def test_dataset_simulated_by_two_processes_equals_one_process(tmp_path):
    """Fields simulated in parallel give the same shards, listed in the configs' order."""
    configs = [FieldConfig(survey="meerlicht", size=64, density=30, seed=s) for s in (13, 11, 12)]
    extract = LocalizerPatches(size=32, stride=32)
    serial = write_dataset(tmp_path / "serial", configs, extract, progress=False)
    parallel = write_dataset(tmp_path / "parallel", configs, extract, progress=False, workers=2)
    assert [e["seed"] for e in parallel["shards"]] == [13, 11, 12]
    assert parallel["shards"] == serial["shards"]
    for one, two in zip(
        iter_shards(tmp_path / "serial"), iter_shards(tmp_path / "parallel"), strict=True
    ):
        assert one.keys() == two.keys()
        for key in one:
            np.testing.assert_array_equal(one[key], two[key])
    with pytest.raises(InvalidParameterError, match="workers must be >= 1"):
        write_dataset(tmp_path / "none", configs, extract, progress=False, workers=0)
