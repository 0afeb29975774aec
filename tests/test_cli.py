"""The command line, run the way users run it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from skysift.cli import app

runner = CliRunner()


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "simulate" in result.output


def test_simulate_writes_a_field(tmp_path):
    out = tmp_path / "field"
    result = runner.invoke(
        app,
        [
            "simulate",
            "--survey",
            "decals",
            "--size",
            "64",
            "--density",
            "30",
            "--seed",
            "7",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [
            "field_g.fits",
            "field_r.fits",
            "field_z.fits",
            "field_truth.ecsv",
            "field_artifacts.ecsv",
            "field_masks.fits",
            "field_config.json",
            "field_preview.png",
        ]
    )
    again = runner.invoke(
        app, ["simulate", "--size", "64", "--out", str(out), "--survey", "decals", "--quiet"]
    )
    assert again.exit_code == 2
    assert "already exist" in again.output


def test_bad_option_is_one_line_not_a_traceback(tmp_path):
    result = runner.invoke(app, ["simulate", "--survey", "hubble", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown survey preset 'hubble'" in result.output
    assert "Traceback" not in result.output
    for command, options, message in (
        ("segmenter", ["--schedule", "fast"], "unknown schedule 'fast'"),
        ("segmenter", ["--typical-fields", "-1"], "typical-fields must be >= 0"),
        ("second-look", ["--typical-fields", "-1"], "typical-fields must be >= 0"),
        ("second-look", ["--filters", "0"], "filters must be >= 1"),
        ("segmenter", ["--name", "Look-2"], "model name 'Look-2'"),
        ("second-look", ["--name", "Look-2"], "model name 'Look-2'"),
    ):
        result = runner.invoke(app, ["train", command, *options, "--data-dir", str(tmp_path), "-q"])
        assert result.exit_code == 2
        assert message in result.output
        assert not any(tmp_path.iterdir())  # refused before anything is simulated


def test_import_is_light():
    """``import skysift`` must not pull in torch, GalSim, photutils or matplotlib."""
    code = (
        "import sys, skysift; heavy = {'torch', 'galsim', 'photutils', 'matplotlib', "
        "'astropy.table', 'scipy'}; print(sorted(heavy & set(sys.modules)))"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert output == "[]"


def test_console_script_help():
    result = subprocess.run(
        [sys.executable, "-m", "skysift.cli", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert "simulate" in result.stdout


def test_run_segments_with_the_psf_model_from_the_config_and_the_seeing_header(tmp_path):
    """``skysift run`` with ``segment: {chain: detector, model: segmenter_psf, second_look:
    second_look}``: the network and its second look take the PSF FWHM from the middle band's
    SEEING header, and the catalog records both."""
    from astropy.io import fits
    from astropy.table import Table

    from skysift.sim import FieldConfig, simulate_field

    field = simulate_field(
        FieldConfig(survey="sdss", size=128, density=40, seed=2_000_777, central_galaxy="spiral")
    )
    paths = field.write(tmp_path / "field", name="f")
    bands = [str(paths[f"image_{band}"]) for band in ("g", "r", "i")]
    config = tmp_path / "config.yaml"
    config.write_text(
        "stages: [localize, segment]\nformats: [ecsv]\n"
        "segment: {chain: detector, model: segmenter_psf, second_look: second_look}\n"
    )
    result = runner.invoke(
        app, ["run", *bands, "--config", str(config), "--out", str(tmp_path / "out"), "-q"]
    )
    assert result.exit_code == 0, result.output
    catalog = Table.read(next((tmp_path / "out").glob("*.ecsv")))
    header = fits.getheader(bands[1])
    assert catalog.meta["segmenter"] == "segmenter_psf"
    assert catalog.meta["segmenter_second_look"] == "second_look"
    assert catalog.meta["segmenter_psf_fwhm_from"] == "header SEEING"
    assert catalog.meta["segmenter_psf_fwhm_pixels"] == pytest.approx(
        header["SEEING"] / header["PIXSCALE"], rel=1e-3
    )
    assert (np.asarray(catalog["area"]) > 0).any()
    assert "segmenter_mask_refiner" not in catalog.meta  # the detector's chain: no refiner


def test_run_takes_the_segment_chain_star_fraction_and_psf_from_the_command_line(tmp_path):
    """``--segmenter``, ``--star-fraction`` and ``--psf-fwhm`` reach the written config (over
    the config file's segment options, which are kept); bad values are one-line errors."""
    import yaml
    from astropy.io import fits

    image = tmp_path / "frame.fits"
    pixels = np.random.default_rng(3).normal(0, 1, (64, 64)).astype(np.float32)
    y, x = np.mgrid[:64, :64]
    pixels += 80 * np.exp(-((x - 30) ** 2 + (y - 33) ** 2) / 4.5)  # one source
    fits.writeto(image, pixels)
    config = tmp_path / "config.yaml"
    config.write_text("stages: [localize]\nsegment: {chain: detector, tile: 256}\n")

    def written(*options: str) -> dict:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        result = runner.invoke(
            app, ["run", str(image), "--config", str(config), "--out", str(out), "-q", *options]
        )
        assert result.exit_code == 0, result.output
        return yaml.safe_load(next(out.glob("*_config.yaml")).read_text())

    plain = written()
    assert plain["segment"]["model"] == "segmenter"
    assert plain["segment"]["second_look"] is None
    chain = written("--segmenter", "recommended", "--star-fraction", "0.6", "--psf-fwhm", "3.5")
    assert chain["segment"]["model"] == "segmenter_psf_typical"
    assert chain["segment"]["second_look"] == ["second_look_reject", "second_look_reject_refined"]
    assert chain["segment"]["colour_typer"] == "colour_typer"
    assert chain["segment"]["star_fraction"] == 0.6
    assert chain["segment"]["tile"] == 256  # the file's other options stay
    assert chain["segment"]["psf_fwhm"] == chain["shreds"]["psf_fwhm"] == 3.5
    alone = written("--segmenter", "segmenter_psf")
    assert alone["segment"]["model"] == "segmenter_psf"
    assert alone["segment"]["mask_refiner"] is None
    for options, message in (
        (["--segmenter", "segmentor"], "--segmenter 'segmentor' is neither 'recommended' nor"),
        (["--segmenter", "segmenter", "--star-fraction", "0.5"], "set second_look too"),
        (["--psf-fwhm", "-2"], "psf_fwhm must be a positive number of pixels"),
    ):
        result = runner.invoke(app, ["run", str(image), "--out", str(tmp_path / "x"), *options])
        assert result.exit_code == 2
        assert message in result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "x").exists()  # refused before anything is written
    result = runner.invoke(
        app, ["batch", str(image), "--out", str(tmp_path / "b"), "--segmenter", "segmentor"]
    )
    assert result.exit_code == 2
    assert "--segmenter 'segmentor' is neither" in result.output
    assert not (tmp_path / "b").exists()
