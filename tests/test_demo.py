"""``skysift demo`` end to end on a small field (shipped localizer, no training)."""

from __future__ import annotations

from astropy.table import QTable
from regions import Regions
from typer.testing import CliRunner

from skysift.cli import app


def test_demo_writes_catalog_regions_and_scores(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(
        app, ["demo", "--out", str(out), "--size", "192", "--density", "20", "--quiet"]
    )
    assert result.exit_code == 0, result.output
    catalog = QTable.read(out / "skysift.ecsv")
    assert len(catalog) > 10
    assert ((catalog["p_star"] >= 0) & (catalog["p_star"] <= 1)).all()
    regions = Regions.read(out / "skysift.reg", format="ds9")
    assert len(regions) == len(catalog)
    assert (out / "skysift_overlay.png").stat().st_size > 10_000
    assert (out / "truth_overlay.png").stat().st_size > 10_000
    assert (out / "skysift_probability.fits").exists()
    assert "<table" in (out / "skysift_report.html").read_text()
