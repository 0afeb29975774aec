"""Catalog and region writers: formats read back with astropy and regions."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import QTable
from regions import Regions

from skysift.catalog import make_catalog
from skysift.errors import InvalidParameterError
from skysift.io import write_catalog, write_regions


@pytest.fixture
def catalog():
    return make_catalog(
        {
            "x": np.array([0.0, 10.5, 99.25]),
            "y": np.array([0.0, 20.0, 5.5]),
            "flux": np.array([1.0, 2.0, 3.0]),
            "morphology": np.array(["star", "elliptical", ""]),
        },
        meta={"detector": "test"},
    )


@pytest.mark.parametrize("suffix", [".fits", ".ecsv", ".csv", ".parquet"])
def test_catalog_formats_read_back(tmp_path, catalog, suffix):
    path = write_catalog(catalog, tmp_path / f"cat{suffix}")
    if suffix == ".parquet":  # astropy reads Parquet through pandas; pyarrow is enough here
        import pyarrow.parquet

        assert pyarrow.parquet.read_table(path).column("x").to_pylist()[1] == 10.5
        return
    back = QTable.read(path)
    np.testing.assert_allclose(
        np.asarray(getattr(back["x"], "value", back["x"])), catalog["x"].value
    )
    assert len(back) == 3
    if suffix != ".csv":
        assert back["flux"].unit == "adu"
    if suffix == ".fits":
        assert '"detector": "test"' in back.meta["SKYMETA"]


def test_catalog_writer_refuses_overwrite_and_unknown_formats(tmp_path, catalog):
    path = write_catalog(catalog, tmp_path / "cat.ecsv")
    with pytest.raises(FileExistsError):
        write_catalog(catalog, path)
    write_catalog(catalog, path, overwrite=True)
    with pytest.raises(InvalidParameterError, match="cannot tell the catalog format"):
        write_catalog(catalog, tmp_path / "cat.xyz")
    with pytest.raises(InvalidParameterError, match="not one of"):
        write_catalog(catalog, tmp_path / "cat.dat", format="votable2")


def test_regions_parse_back_with_one_based_shift_handled(tmp_path, catalog):
    path = write_regions(catalog, tmp_path / "sources.reg")
    text = path.read_text()
    assert "circle(1.00000000,1.00000000" in text  # DS9 image coordinates are 1-based
    parsed = Regions.read(path, format="ds9")
    assert len(parsed) == 3
    np.testing.assert_allclose([r.center.x for r in parsed], catalog["x"].value)
    assert [str(r.meta["text"]) for r in parsed] == ["1", "2", "3"]
    assert [r.visual["edgecolor"] for r in parsed] == ["cyan", "orange", "green"]
    flagged = catalog.copy()
    flagged["p_shred"] = np.array([np.nan, 0.7, 0.2], np.float32)  # the galaxy is a shred
    parsed = Regions.read(write_regions(flagged, tmp_path / "shreds.reg"), format="ds9")
    assert [r.visual["edgecolor"] for r in parsed] == ["cyan", "magenta", "green"]


def test_source_groups_prefer_the_segmenters_call_and_survive_a_file(tmp_path):
    """The segmenter's ``morphology`` decides where it segmented a source, ``p_star`` where
    it did not, a shred wins over both; the same groups come back from an ECSV file, whose
    empty entries read back masked, and the regions and the report show the same ones."""
    from astropy.table import QTable, Table

    from skysift.catalog import source_groups
    from skysift.report import _kinds

    table = make_catalog(
        {
            "x": np.arange(6.0),
            "y": np.arange(6.0),
            "flux": np.ones(6),
            "p_star": np.array([0.9, 0.9, 0.1, 0.9, np.nan, np.nan]),
            "morphology": np.array(["", "spiral", "star", "other", "", "elliptical"]),
            "p_shred": np.array([np.nan, np.nan, np.nan, 0.8, np.nan, np.nan]),
        }
    )
    expected = ["star", "galaxy", "star", "shred", "", "galaxy"]
    assert source_groups(table).tolist() == expected
    back = Table.read(write_catalog(table, tmp_path / "cat.ecsv"))
    assert np.ma.is_masked(back["morphology"][0])
    assert source_groups(back).tolist() == expected
    assert source_groups(QTable({"x": [1.0]})).tolist() == [""]
    assert _kinds(back).tolist() == [g or "source" for g in expected]
    parsed = Regions.read(write_regions(back, tmp_path / "groups.reg"), format="ds9")
    colours = {"star": "cyan", "galaxy": "orange", "shred": "magenta", "": "green"}
    assert [r.visual["edgecolor"] for r in parsed] == [colours[g] for g in expected]
