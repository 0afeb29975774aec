"""Pipeline, configuration round trip and ``skysift run`` end to end."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import QTable
from regions import Regions
from typer.testing import CliRunner

import skysift
from skysift.cli import app
from skysift.config import PipelineConfig
from skysift.errors import InvalidParameterError
from skysift.localizer import LocalizeConfig
from skysift.sim import FieldConfig, simulate_field


@pytest.fixture(scope="module")
def frame(tmp_path_factory):
    field = simulate_field(FieldConfig(survey="meerlicht", size=160, density=30, seed=2_000_501))
    return field, field.write(tmp_path_factory.mktemp("frame"), name="frame")["image_q"]


def test_config_yaml_round_trip_and_unknown_keys():
    config = PipelineConfig(
        stages=("localize", "classify"),
        formats=("fits", "ecsv"),
        localize=LocalizeConfig(threshold=0.25, tile=128),
    )
    assert PipelineConfig.from_yaml(config.to_yaml()) == config
    with pytest.raises(InvalidParameterError, match=r"unknown option\(s\) \['treshold'\]"):
        PipelineConfig.from_yaml("localize: {treshold: 0.3}")
    with pytest.raises(InvalidParameterError, match="unknown stage"):
        PipelineConfig(stages=("localize", "photometry"))
    with pytest.raises(InvalidParameterError, match="unknown catalog format"):
        PipelineConfig(formats=("xlsx",))


def test_segment_config_starts_from_the_recommended_chain_or_the_detector():
    """The pipeline segments with the recommended chain by default; a YAML section's options
    replace that chain's, or the detector's alone with ``chain: detector``; written configs
    read back as the same chain."""
    from skysift.config import segment_config, with_segmenter
    from skysift.segment import SegmentConfig

    recommended = SegmentConfig.recommended()
    assert PipelineConfig().segment == recommended
    assert PipelineConfig.from_yaml("stages: [localize]").segment == recommended
    assert PipelineConfig.from_yaml("segment:").segment == recommended
    mix = PipelineConfig.from_yaml("segment: {star_fraction: 0.6, tile: 256}").segment
    assert mix == SegmentConfig.recommended(star_fraction=0.6, tile=256)
    detector = PipelineConfig.from_yaml("segment: {chain: detector, model: segmenter_psf}")
    assert detector.segment == SegmentConfig(model="segmenter_psf")
    for config in (PipelineConfig(), detector):
        assert PipelineConfig.from_yaml(config.to_yaml()) == config
    assert "chain" not in PipelineConfig().to_dict()["segment"]
    with pytest.raises(InvalidParameterError, match="unknown chain 'best'"):
        PipelineConfig.from_yaml("segment: {chain: best}")
    with pytest.raises(InvalidParameterError, match=r"allowed: \[.*'chain'"):
        PipelineConfig.from_yaml("segment: {chains: detector}")
    with pytest.raises(InvalidParameterError, match="unknown chain"):
        segment_config("Recommended")
    tiled = SegmentConfig.recommended(tile=1024, psf_fwhm=3.0, star_fraction=0.5)
    alone = with_segmenter(tiled, "segmenter")
    assert alone == SegmentConfig(tile=1024, psf_fwhm=3.0)
    assert with_segmenter(alone, "recommended") == SegmentConfig.recommended(
        tile=1024, psf_fwhm=3.0
    )


def test_pipeline_skips_stages_it_cannot_run_with_a_reason(frame):
    from skysift.shreds import ShredsConfig

    field, _ = frame
    config = PipelineConfig(stages=("localize", "classify", "shreds"))
    result = skysift.Pipeline(config)(field.image)  # one band: the shred classifier takes 3
    assert len(result.catalog) > 10
    assert "shreds" in result.skipped
    assert "classify" not in result.skipped
    assert "takes 3 bands (g, r, z); the image has 1" in result.skipped["shreds"]
    assert result.catalog.meta["stages_skipped"] == result.skipped
    assert result.catalog.meta["stages_run"] == ["localize", "classify"]
    missing = PipelineConfig(stages=("localize", "shreds"), shreds=ShredsConfig(model="nothing"))
    result = skysift.Pipeline(missing)(field.image)
    assert result.skipped["shreds"] == "the shred classifier 'nothing' is not shipped"
    assert PipelineConfig.from_yaml(missing.to_yaml()) == missing


def test_classify_stage_fills_calibrated_p_star(frame):
    field, _ = frame
    result = skysift.Pipeline()(field.image)  # default stages: localize, classify
    p_star = np.asarray(result.catalog["p_star"])
    assert np.isfinite(p_star).all()
    assert ((p_star >= 0) & (p_star <= 1)).all()
    assert "classify" in result.timings
    assert result.catalog.meta["stargalaxy_model"] == "stargalaxy"
    localized_only = skysift.Pipeline(PipelineConfig(stages=("localize",)))(field.image)
    assert np.isnan(np.asarray(localized_only.catalog["p_star"])).all()


def test_run_cli_writes_every_format_and_they_read_back(frame, tmp_path):
    _, image_path = frame
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(image_path),
            "--out",
            str(out),
            "--format",
            "fits,ecsv,csv,parquet",
            "--probability-map",
            "--overlay",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "frame_q_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ecsv = QTable.read(out / "frame_q.ecsv")
    fits_table = QTable.read(out / "frame_q.fits")
    assert len(ecsv) == len(fits_table) > 10
    np.testing.assert_allclose(fits_table["x"].value, ecsv["x"].value)
    assert len(Regions.read(out / "frame_q.reg", format="ds9")) == len(ecsv)
    with fits.open(out / "frame_q_probability.fits") as hdul:
        assert hdul[0].header["CTYPE1"] == "RA---TAN"
    config = PipelineConfig.from_yaml((out / "frame_q_config.yaml").read_text())
    assert config.formats == ("fits", "ecsv", "csv", "parquet")
    assert config.stages == ("localize", "classify")
    assert np.isfinite(np.asarray(ecsv["p_star"])).all()
    again = CliRunner().invoke(app, ["run", str(image_path), "--out", str(out), "--quiet"])
    assert again.exit_code == 2
    assert "exists" in again.output


def test_output_name_cannot_escape_the_directory(frame, tmp_path):
    field, _ = frame
    result = skysift.Pipeline()(field.image)
    with pytest.raises(InvalidParameterError, match="plain file name"):
        result.write(tmp_path, name="../outside")


def test_run_function_on_a_path(frame):
    _, image_path = frame
    result = skysift.run(image_path)
    assert result.wcs is not None
    assert "ra" in result.catalog.colnames


def test_segment_stage_says_why_it_cannot_run(frame):
    from skysift.segment import SegmentConfig

    field, _ = frame
    config = PipelineConfig(
        stages=("localize", "segment"), segment=SegmentConfig(model="no-such-model")
    )
    result = skysift.Pipeline(config)(field.image)
    assert "not shipped" in result.skipped["segment"]
    assert result.segmentation is None
    two_bands = np.stack([field.image.data[0]] * 2)
    pipeline = skysift.Pipeline(PipelineConfig(stages=("localize", "segment")))
    pipeline._segmenter = object()  # as if loaded: the band count decides
    result = pipeline(two_bands)
    assert "3 bands or 1 band" in result.skipped["segment"]


def test_segment_stage_without_a_psf_is_skipped_with_the_reason():
    """The recommended chain takes the PSF FWHM; on an image with neither a SEEING header nor
    stars to measure it on, the stage is skipped with a reason that says what to give, and the
    other stages' catalog is kept."""
    sky = np.random.default_rng(5).normal(100.0, 5.0, (96, 96)).astype(np.float32)
    y, x = np.mgrid[:96, :96]
    sky += 400.0 * np.exp(-((x - 50) ** 2 + (y - 41) ** 2) / 4.5)  # too few to measure a PSF
    result = skysift.Pipeline(PipelineConfig(stages=("localize", "segment")))(sky)
    reason = result.skipped["segment"]
    assert "'segmenter_psf_typical' and its star/galaxy looks, shred classifier" in reason
    assert "could not be measured on this image" in reason
    assert "--psf-fwhm" in reason
    assert result.segmentation is None
    assert result.catalog.meta["stages_run"] == ["localize"]


def test_segment_stage_labels_are_catalog_ids(frame, tmp_path):
    from astropy.io import fits

    from skysift.segment import SegmentConfig, Segmenter
    from standins import CARD, ThresholdSegmenter

    field, _ = frame
    pipeline = skysift.Pipeline(PipelineConfig(stages=("localize", "classify", "segment")))
    pipeline._segmenter = Segmenter(
        SegmentConfig(galaxy_types=None), module=ThresholdSegmenter(level=2.0), card=CARD
    )
    result = pipeline(field.image)
    catalog, segmentation = result.catalog, result.segmentation
    assert result.catalog.meta["stages_run"] == ["localize", "classify", "segment"]
    labels = set(np.unique(segmentation).tolist()) - {0}
    assert labels
    assert labels <= set(np.asarray(catalog["id"]).tolist())
    segmented = catalog[np.asarray(catalog["area"]) > 0]
    assert set(np.asarray(segmented["id"]).tolist()) == labels
    for row in segmented[:5]:
        assert (segmentation == row["id"]).sum() == row["area"]
    paths = result.write(tmp_path, name="frame")
    with fits.open(paths["segmentation"]) as hdul:  # losslessly compressed, with the WCS
        assert isinstance(hdul["SEGMENTATION"], fits.CompImageHDU)
        assert (hdul["SEGMENTATION"].data == segmentation).all()
        header = hdul["SEGMENTATION"].header
        assert header["SEGMODEL"] == catalog.meta["segmenter"]
        assert ("CTYPE1" in header) == (result.wcs is not None)
    assert (fits.getdata(paths["segmentation"]) == segmentation).all()  # found without a name
    assert paths["segmentation"].stat().st_size < segmentation.nbytes / 4
    # --no-segmap: the map stays in the result but is not written
    quiet = dataclasses.replace(result, config=result.config.with_overrides(segmentation_map=False))
    paths = quiet.write(tmp_path / "nomap", name="frame")
    assert "segmentation" not in paths
    assert not list((tmp_path / "nomap").glob("*segmentation*"))
