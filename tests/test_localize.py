"""Tiling, stitching, peaks, positions and photometry of the localizer.

These tests use an *oracle* network (a fixed Gaussian matched filter) so that the machinery
around the U-Net is checked independently of training; tests of the shipped weights are in
test_localizer_model.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from skysift.errors import EmptyCatalogWarning, InvalidParameterError
from skysift.image import Image
from skysift.localizer import LocalizeConfig, Localizer
from skysift.models.runtime import make_runner
from skysift.models.unet import UNet, UNetConfig
from skysift.tiling import predict_tiled, tile_grid


class Oracle(torch.nn.Module):
    """Matched filter + local maxima, drawn as 13-pixel blobs (what a trained U-Net outputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.config = UNetConfig(widths=(4, 4, 4, 4, 4))
        radius = np.arange(-3, 4)
        kernel = np.exp(-(radius[:, None] ** 2 + radius[None, :] ** 2) / (2 * 1.5**2))
        self.conv = torch.nn.Conv2d(1, 1, 7, padding=3, bias=False)
        self.conv.weight.data[:] = torch.from_numpy(kernel / kernel.sum()).float()

        self.cross = torch.nn.Conv2d(1, 1, 5, padding=2, bias=False)
        stencil = np.zeros((5, 5), np.float32)
        stencil[1:4, 1:4] = 1.0
        stencil[0, 2] = stencil[4, 2] = stencil[2, 0] = stencil[2, 4] = 1.0
        self.cross.weight.data[:] = torch.from_numpy(stencil)

    def forward(self, x):
        smooth = self.conv(x)
        local_max = torch.nn.functional.max_pool2d(smooth, 5, stride=1, padding=2)
        peaks = ((smooth >= local_max) & (smooth > 0.5)).float()
        return 12.0 * (self.cross(peaks) - 0.5)


ORACLE_CARD = {
    "name": "oracle",
    "architecture": {"kind": "unet", "config": {"in_channels": 1, "widths": [4, 4, 4, 4, 4]}},
    "normalization": {"softening": 4.0},
    "peaks": {"sigma": 1.43, "threshold": 0.2, "overlap": 0.8},
}


def oracle_localizer(**options) -> Localizer:
    config = LocalizeConfig(**{"backend": "torch", **options})
    return Localizer(config, module=Oracle().eval(), card=ORACLE_CARD)


def star_image(positions, shape, *, flux=4000.0, sky=100.0, noise=5.0, seed=0):
    import galsim

    image = galsim.ImageF(shape[1], shape[0], scale=1.0, xmin=0, ymin=0)
    for x, y in positions:
        galsim.Gaussian(fwhm=3.0, flux=flux).drawImage(
            image=image, center=galsim.PositionD(x, y), add_to_image=True, method="no_pixel"
        )
    rng = np.random.default_rng(seed)
    return (image.array + sky + rng.normal(0, noise, shape)).astype(np.float32)


@pytest.mark.parametrize("shape", [(100, 100), (256, 256), (300, 517), (1000, 700)])
def test_tiles_partition_the_image(shape):
    coverage = np.zeros(shape, dtype=int)
    for tile in tile_grid(shape, tile=256, margin=16):
        coverage[tile.out_rows, tile.out_cols] += 1
        assert tile.keep_rows.stop - tile.keep_rows.start == tile.out_rows.stop - (
            tile.out_rows.start
        )
    assert np.all(coverage == 1)


def test_stitching_has_no_seams(rng):
    image = rng.normal(size=(600, 530)).astype(np.float32)

    def blur(batch):  # needs 4 px of context on every side
        return np.stack([uniform_filter(b, size=(1, 9, 9), mode="reflect") for b in batch])

    stitched = predict_tiled(image, blur, tile=128, margin=8, batch_size=3)
    np.testing.assert_allclose(stitched, uniform_filter(image, size=9, mode="reflect"), atol=1e-6)
    same = predict_tiled(image[:50, :70], lambda b: b, tile=128, margin=8)
    np.testing.assert_array_equal(same, image[:50, :70])


def test_chosen_tile_computes_fewer_pixels_than_fixed_tiles():
    from skysift.tiling import choose_tile

    def computed(shape, tile):
        return len(tile_grid(shape, tile=tile, margin=16)) * tile**2

    for shape in [(2560, 2560), (4096, 2048), (1000, 700), (517, 300)]:
        tile = choose_tile(shape, margin=16, multiple=16)
        assert tile % 16 == 0
        assert 256 <= tile <= 576
        assert all(computed(shape, tile) <= computed(shape, t) for t in range(256, 577, 16))
    assert choose_tile((2560, 2560), margin=16, multiple=16) == 544  # 1.13x the pixels, not 1.44x
    assert choose_tile((100, 100), margin=16, multiple=16) == 256  # padded, as in training


def test_auto_tiles_stitch_like_fixed_tiles(rng):
    """Tiles chosen per image stitch without seams, like fixed ones."""
    image = rng.normal(size=(700, 620)).astype(np.float32)

    def blur(batch):
        return np.stack([uniform_filter(b, size=(1, 9, 9), mode="reflect") for b in batch])

    auto = oracle_localizer()
    fixed = oracle_localizer(tile=256)
    assert auto.tiling(image.shape)[0] != 256
    assert fixed.tiling(image.shape) == (256, fixed.config.batch_size)
    tile, batch = auto.tiling(image.shape)
    stitched = predict_tiled(image, blur, tile=tile, margin=16, batch_size=batch)
    np.testing.assert_allclose(stitched, uniform_filter(image, size=9, mode="reflect"), atol=1e-6)


def test_invalid_tiles():
    with pytest.raises(InvalidParameterError, match="larger than twice the margin"):
        tile_grid((100, 100), tile=32, margin=16)
    with pytest.raises(InvalidParameterError, match="multiple of 16"):
        oracle_localizer(tile=200, margin=16)


def test_sources_on_tile_seams_are_found_once():
    # with tile 256 / margin 16 the kept regions meet at rows and columns 240 and 464
    positions = [(240.3, 240.2), (239.6, 100.0), (464.1, 300.4), (100.0, 463.7), (350.5, 350.5)]
    data = star_image(positions, (600, 600))
    catalog, _ = oracle_localizer()(data)
    assert len(catalog) == len(positions)
    for x, y in positions:
        distance = np.hypot(catalog["x"].value - x, catalog["y"].value - y)
        assert np.sum(distance < 1.5) == 1
        assert distance.min() < 0.15


@pytest.mark.parametrize("augment", ["flips", "d4"])
def test_augmented_maps_are_mapped_back_onto_the_image(augment):
    # the oracle is symmetric under flips and quarter turns, so every augmented pass must land
    # its blobs where the plain pass does (a wrong inverse would smear or move them); the
    # image is not square, so the turned passes are tiled on the transposed shape
    positions = [(30.2, 40.7), (250.4, 61.3), (120.0, 150.6), (300.8, 170.2)]
    data = star_image(positions, (200, 330))
    plain_catalog, plain = oracle_localizer()(data)
    catalog, probability = oracle_localizer(augment=augment)(data)
    np.testing.assert_allclose(probability, plain, atol=1e-5)
    assert len(catalog) == len(plain_catalog) == len(positions)
    np.testing.assert_allclose(catalog["x"].value, plain_catalog["x"].value, atol=1e-4)


def test_augmented_map_is_the_mean_of_the_symmetric_passes():
    # a network that only sees the left-right gradient: its flipped passes differ, and the
    # "flips" map is the mean of the four passes, each flipped back
    class Gradient(Oracle):
        def forward(self, x):
            return 4.0 * (x[..., :, 1:2] - x[..., :, :1]).expand_as(x).contiguous() + 0 * x

    ramp = np.tile(np.linspace(0.0, 50.0, 90, dtype=np.float32), (70, 1)) + 100.0
    localizer = Localizer(
        LocalizeConfig(backend="torch", augment="flips", tile=96, margin=0),
        module=Gradient().eval(),
        card=ORACLE_CARD,
    )
    plain = Localizer(
        LocalizeConfig(backend="torch", tile=96, margin=0),
        module=Gradient().eval(),
        card=ORACLE_CARD,
    )
    image = Image.from_array(ramp)
    passes = []
    for view, back in (
        (ramp, lambda p: p),
        (ramp[:, ::-1], lambda p: p[:, ::-1]),
        (ramp[::-1, ::-1], lambda p: p[::-1, ::-1]),
        (ramp[::-1], lambda p: p[::-1]),
    ):
        passes.append(back(plain.probability_map(Image.from_array(np.ascontiguousarray(view)))))
    assert not np.allclose(passes[0], passes[1])
    np.testing.assert_allclose(localizer.probability_map(image), np.mean(passes, axis=0), atol=1e-6)


def test_unknown_augmentation_is_refused():
    with pytest.raises(InvalidParameterError, match="augment"):
        LocalizeConfig(augment="d8")
    with pytest.raises(InvalidParameterError, match="augment"):
        LocalizeConfig(augment=["d4"])  # e.g. a YAML list by mistake


def test_block_wise_peaks_equal_whole_map_peaks(rng):
    # a probability map full of blobs, some straddling the block seams, some close pairs
    from scipy.ndimage import gaussian_filter

    spikes = np.zeros((700, 900), np.float32)
    rows, cols = rng.integers(0, 700, 1500), rng.integers(0, 900, 1500)
    spikes[rows, cols] = rng.uniform(0.5, 3.0, rows.size)
    probability = np.clip(gaussian_filter(spikes, 1.5) * 12.0, 0, 1).astype(np.float32)
    localizer = oracle_localizer()
    whole = localizer.peaks(probability, block=10_000)
    blocks = localizer.peaks(probability, block=200)
    assert len(whole) > 500
    key = lambda p: sorted(map(tuple, p.tolist()))  # noqa: E731
    assert key(blocks) == key(whole)


def test_masked_pixels_never_produce_detections():
    data = star_image([(60.0, 60.0), (150.0, 150.0)], (200, 200))
    mask = np.zeros(data.shape, dtype=bool)
    mask[130:170, 130:170] = True
    catalog, probability = oracle_localizer()(data, mask=mask)
    assert len(catalog) == 1
    assert catalog["x"][0].value == pytest.approx(60.0, abs=0.2)
    assert probability[mask].max() == 0.0


def test_nan_pixels_are_masked_not_fatal():
    data = star_image([(60.0, 60.0)], (128, 128))
    data[10:20, :] = np.nan
    catalog, _ = oracle_localizer()(data)
    assert len(catalog) == 1


def test_image_smaller_than_a_tile():
    data = star_image([(20.2, 17.7)], (40, 48))
    catalog, probability = oracle_localizer()(data)
    assert probability.shape == (40, 48)
    assert len(catalog) == 1
    assert catalog["x"][0].value == pytest.approx(20.2, abs=0.15)


def test_empty_field_gives_full_schema_and_warning():
    data = star_image([], (128, 128))
    with pytest.warns(EmptyCatalogWarning, match="no sources"):
        catalog, _ = oracle_localizer()(data)
    assert len(catalog) == 0
    assert catalog.colnames[:6] == ["id", "x", "y", "x_peak", "y_peak", "score"]


def test_photometry_snr_and_flux():
    data = star_image([(64.0, 64.0)], (128, 128), flux=4000.0, noise=5.0)
    catalog, _ = oracle_localizer(aperture_radius=6.0)(data)
    row = catalog[0]
    assert row["flux"].value == pytest.approx(4000.0, rel=0.05)
    # noise-limited S/N of a 6-px aperture: 4000 / (5 * sqrt(pi * 36))
    assert row["snr"] == pytest.approx(4000.0 / (5.0 * np.sqrt(np.pi * 36)), rel=0.15)
    assert row["id"] == 1
    assert row["flags"] == 0


def test_sources_whose_apertures_overlap_are_flagged_blended():
    """Two stars 8 px apart with 6-px apertures overlap, and both are flagged; one 40 px from
    them is not. The rule itself: centres closer than two radii."""
    from skysift.catalog import FLAGS
    from skysift.localizer import overlapping_apertures

    data = star_image([(40.0, 64.0), (48.0, 64.0), (90.0, 64.0)], (128, 128), flux=4000.0)
    catalog, _ = oracle_localizer(aperture_radius=6.0)(data)
    catalog.sort("x")
    blended = (np.asarray(catalog["flags"]) & FLAGS["blended"]) > 0
    np.testing.assert_array_equal(blended, [True, True, False])
    np.testing.assert_array_equal(
        overlapping_apertures(np.array([0.0, 11.9, 30.0]), np.zeros(3), 6.0), [1, 1, 0]
    )
    assert overlapping_apertures(np.array([5.0]), np.array([5.0]), 6.0).tolist() == [False]
    assert overlapping_apertures(np.zeros(0), np.zeros(0), 6.0).size == 0


def test_multiband_detection_image_and_wcs():
    from astropy.wcs import WCS

    g = star_image([(50.0, 50.0)], (96, 96), seed=1)
    r = star_image([(50.0, 50.0)], (96, 96), seed=2)
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [10.0, -5.0]
    wcs.wcs.cdelt = [-1e-4, 1e-4]
    image = Image.from_array(np.stack([g, r]), bands=["g", "r"])
    catalog, _ = oracle_localizer()(image, wcs=wcs)
    assert len(catalog) == 1
    sky = wcs.pixel_to_world(catalog["x"][0].value, catalog["y"][0].value)
    assert catalog["ra"][0].value == pytest.approx(sky.ra.deg)


def test_onnx_and_torch_backends_agree(rng):
    from skysift.models.runtime import make_runner

    module = UNet(UNetConfig(widths=(4, 8, 16))).eval()
    batch = rng.normal(size=(2, 1, 64, 64)).astype(np.float32)
    onnx = make_runner(module, "onnx")(batch)
    eager = make_runner(module, "torch")(batch)
    np.testing.assert_allclose(onnx, eager, atol=1e-5)


def test_weights_round_trip_and_tampering_is_refused(tmp_path):
    from skysift.models.registry import ModelIntegrityError, load_model, save_model

    module = UNet(UNetConfig(widths=(4, 8))).eval()
    card = {
        "name": "tiny",
        "architecture": {"kind": "unet", "config": {"in_channels": 1, "widths": [4, 8]}},
        "metrics": {"precision_at_80_recall": {"star": float("nan"), "galaxy": 0.9}},
    }
    path = save_model(module, card, tmp_path, fp16=False)
    text = (tmp_path / "tiny.json").read_text()
    assert "NaN" not in text  # strict JSON: a metric with nothing to measure is null
    loaded, loaded_card = load_model("tiny", directory=tmp_path)
    assert loaded_card["metrics"]["precision_at_80_recall"] == {"star": None, "galaxy": 0.9}
    for key, value in module.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value.to(loaded.state_dict()[key]))
    assert loaded_card["sha256"]
    assert loaded_card["dtype"] == "float32"
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelIntegrityError, match="Refusing to load"):
        load_model("tiny", directory=tmp_path)


def _tiny_shipped(directory):
    from skysift.models.registry import save_model

    torch.manual_seed(0)
    module = UNet(UNetConfig(widths=(4, 8))).eval()
    card = {
        "name": "tiny",
        "architecture": {"kind": "unet", "config": {"in_channels": 1, "widths": [4, 8]}},
    }
    return module, save_model(module, card, directory, fp16=False)


def test_shipped_runner_exports_once_and_reuses_the_cached_graph(tmp_path, monkeypatch, caplog):
    from skysift.models import runtime

    monkeypatch.setenv("SKYSIFT_CACHE_DIR", str(tmp_path / "cache"))
    module, _ = _tiny_shipped(tmp_path)
    batch = np.random.default_rng(0).normal(size=(2, 1, 32, 32)).astype(np.float32)
    expected = make_runner(module, "torch")(batch)
    first = runtime.shipped_runner("tiny", directory=tmp_path)(batch)
    (graph,) = (tmp_path / "cache" / "onnx").glob("tiny-*.onnx")
    np.testing.assert_allclose(first, expected, atol=1e-5)

    exports = []
    monkeypatch.setattr(runtime, "_export", lambda *a: exports.append(a) or b"")
    np.testing.assert_allclose(runtime.shipped_runner("tiny", directory=tmp_path)(batch), first)
    assert exports == []  # the cached graph was used
    # a damaged cached graph is noticed and exported again
    monkeypatch.undo()
    monkeypatch.setenv("SKYSIFT_CACHE_DIR", str(tmp_path / "cache"))
    graph.write_bytes(graph.read_bytes()[:-10])
    again = runtime.shipped_runner("tiny", directory=tmp_path)(batch)
    np.testing.assert_allclose(again, expected, atol=1e-5)
    assert "corrupt" in caplog.text
    assert runtime._cached_graph(graph) is not None  # rewritten whole


def test_shipped_runner_refuses_tampered_weights_even_with_a_cached_graph(tmp_path, monkeypatch):
    from skysift.models.registry import ModelIntegrityError
    from skysift.models.runtime import shipped_runner

    monkeypatch.setenv("SKYSIFT_CACHE_DIR", str(tmp_path / "cache"))
    _, path = _tiny_shipped(tmp_path)
    shipped_runner("tiny", directory=tmp_path)  # cached now
    blob = bytearray(path.read_bytes())
    blob[-5] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(ModelIntegrityError, match="Refusing to load"):
        shipped_runner("tiny", directory=tmp_path)


def test_shipped_runner_works_when_the_cache_cannot_be_written(tmp_path, monkeypatch):
    from skysift.models.runtime import shipped_runner

    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("SKYSIFT_CACHE_DIR", str(blocker))
    module, _ = _tiny_shipped(tmp_path)
    batch = np.zeros((1, 1, 32, 32), np.float32)
    out = shipped_runner("tiny", directory=tmp_path)(batch)
    np.testing.assert_allclose(out, make_runner(module, "torch")(batch), atol=1e-5)


def test_pipeline_runs_without_importing_torch_once_graphs_are_cached(tmp_path):
    """Shipped localizer + classifier from cached graphs: no torch import (~0.5 GB saved)."""
    import os
    import subprocess
    import sys

    script = (
        "import sys, numpy as np, skysift\n"
        "image = np.random.default_rng(1).normal(100, 5, (128, 128)).astype(np.float32)\n"
        "image[60:65, 60:65] += 400\n"
        "skysift.run(image)\n"
        "print('torch' in sys.modules)\n"
    )
    env = {**os.environ, "SKYSIFT_CACHE_DIR": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-W", "ignore", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()[-1]
        for _ in range(2)
    ]
    assert runs == ["True", "False"]  # the first run exports (torch), the second does not
