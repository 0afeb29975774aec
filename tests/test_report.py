"""The HTML report: self-contained, right number of rows, renders in headless Chromium."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest

import skysift
from skysift.config import PipelineConfig
from skysift.sim import FieldConfig, simulate_field


class _Counter(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows = 0
        self.in_body = False
        self.external = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "tbody":
            self.in_body = True
        if tag == "tr" and self.in_body:
            self.rows += 1
        for key in ("src", "href"):
            value = attributes.get(key)
            if value and not value.startswith("data:"):
                self.external.append(value)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    field = simulate_field(FieldConfig(survey="meerlicht", size=160, density=30, seed=2_000_701))
    result = skysift.Pipeline(PipelineConfig(report=True))(field.image)
    out = tmp_path_factory.mktemp("report")
    paths = result.write(out, name="frame")
    return paths["report"], result


def test_report_is_self_contained_with_all_rows(report):
    path, result = report
    parser = _Counter()
    parser.feed(path.read_text())
    assert parser.rows == len(result.catalog) > 5
    assert parser.external == []  # no file or network references: it can be mailed


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="Debian chromium is not installed (.ci/run installs it)",
)
def test_report_renders_in_headless_chromium(report, tmp_path):
    path, result = report
    screenshot = tmp_path / "report.png"
    common = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    subprocess.run(
        [*common, f"--screenshot={screenshot}", "--window-size=1200,2000", path.as_uri()],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert screenshot.stat().st_size > 20_000
    dom = subprocess.run(
        [*common, "--dump-dom", path.as_uri()],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    parser = _Counter()
    parser.feed(dom)
    assert parser.rows == len(result.catalog)


def test_overlay_classes_mark_shreds_over_their_group():
    """A source with P(shred) >= 0.5 is drawn as a shred whatever its P(star); NaN is not."""
    from astropy.table import QTable

    from skysift.report import _kinds

    catalog = QTable(
        {
            "p_star": np.array([0.9, 0.1, 0.1, np.nan]),
            "p_shred": np.array([np.nan, 0.7, 0.2, np.nan]),
        }
    )
    assert _kinds(catalog).tolist() == ["star", "shred", "galaxy", "source"]


def test_the_report_names_every_stages_models():
    """The report's Models section names the model of each stage that ran, and the parts of
    the segmenter's chain with what they took (or why one was left out)."""
    from skysift.report import stage_models

    meta = {
        "detector": "skysift-localizer",
        "model": "localizer",
        "stargalaxy_model": "stargalaxy",
        "shred_model": "shred",
        "segmenter": "segmenter_psf_typical",
        "segmenter_second_look": "second_look_reject+second_look_reject_refined",
        "segmenter_colour_typer_skipped": "the image has 1 band(s) (r)",
        "segmenter_psf_fwhm_from": "config",
        "stages_run": ["localize", "classify", "shreds", "segment"],
    }
    assert stage_models(meta) == {
        "localize": "localizer",
        "classify": "stargalaxy",
        "shreds": "shred",
        "segment": {
            "detector": "segmenter_psf_typical",
            "second_look": "second_look_reject+second_look_reject_refined",
            "colour_typer_skipped": "the image has 1 band(s) (r)",
            "psf_fwhm_from": "config",
        },
    }
    assert stage_models({"model": "localizer"}) == {"localize": "localizer"}
    shifted = {"stargalaxy_model": "stargalaxy", "stargalaxy_out_of_domain": "another scale"}
    assert stage_models(shifted) == {
        "classify": {"model": "stargalaxy", "out_of_domain": "another scale"}
    }


def test_footprint_outlines_take_their_sources_colour():
    """The outline of a footprint is its pixels next to another label or none, in the colour
    of its source's kind; inside, outside and an unknown id's outline are as they should."""
    from matplotlib.colors import to_rgba

    from skysift.report import footprint_outlines

    labels = np.zeros((9, 12), np.int32)
    labels[1:8, 1:6] = 7  # a star's footprint, 7 x 5
    labels[2:5, 6:9] = 9  # a galaxy touching it
    labels[6:8, 9:11] = 4  # an id the catalog does not hold
    palette = (("star", "cyan"), ("galaxy", "orange"), ("source", "green"))
    rgba = footprint_outlines(labels, np.array([7, 9]), np.array(["star", "galaxy"]), palette)
    assert rgba.shape == (9, 12, 4)
    np.testing.assert_allclose(rgba[1, 3], to_rgba("cyan"))  # the star's top edge
    np.testing.assert_allclose(rgba[3, 5], to_rgba("cyan"))  # where it meets the galaxy
    np.testing.assert_allclose(rgba[3, 6], to_rgba("orange"))
    np.testing.assert_allclose(rgba[6, 9], to_rgba("green"))
    assert rgba[4, 3, 3] == 0  # inside the star: transparent
    assert rgba[0, 0, 3] == 0  # no source
