"""The colour typer: its photometry, its inputs, its decision in the chain, its training."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from skysift.colour_typer import (
    CLASSES,
    FEATURES,
    MASK_LIGHT,
    PROFILE_FWHM,
    ColourTyper,
    aperture_fluxes,
    aperture_profile,
    feature_names,
    instance_features,
    mask_light,
    retype_by_colour,
    sky_subtracted,
)
from skysift.errors import InvalidParameterError
from skysift.image import Image
from skysift.models.colour_typer import ColourTyperConfig, ColourTyperNet

DETECTOR_CLASSES = ("star", "elliptical", "spiral", "other")
G_MINUS_R = FEATURES.index("colour_band0")


class _RedIsStar(torch.nn.Module):
    """A typer network: a star when g - r > 0.5 mag, else a galaxy, never false."""

    def forward(self, features):
        colour = features[:, G_MINUS_R]
        star = 20.0 * (colour - 0.5)
        return torch.stack([torch.zeros_like(star), star, torch.full_like(star, -20.0)], dim=1)


def _typer(zero_points=(25.0, 25.0, 25.0), *, profile: bool = False) -> ColourTyper:
    inputs = {"bands": 3, "zero_points": list(zero_points), "aperture_profile": profile}
    return ColourTyper(module=_RedIsStar(), card={"name": "red_is_star", "inputs": inputs})


def _gaussian(shape, x, y, sigma, flux):
    rows, cols = np.indices(shape)
    profile = np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
    return flux * profile / profile.sum()


def test_the_sky_goes_and_the_noise_is_measured_with_a_gradient_and_an_offset():
    rng = np.random.default_rng(0)
    rows, cols = np.indices((128, 128))
    sky = 1000.0 + 0.2 * cols + np.where(rows < 64, 0.0, 3.0)  # a ramp, an amplifier step
    bands = np.stack([sky + rng.normal(0.0, s, sky.shape) for s in (5.0, 10.0, 20.0)])
    bad = np.zeros((128, 128), bool)
    bad[:4] = True
    bands[:, :4] = np.nan  # masked pixels may be anything
    image, rms = sky_subtracted(bands, bad)
    np.testing.assert_allclose(rms, [5.0, 10.0, 20.0], rtol=0.1)
    assert abs(float(np.median(image[:, 4:]))) < 1.0
    assert (image[:, :4] == 0).all()
    assert np.isnan(bands[:, :4]).all()  # the input is not modified


def test_aperture_fluxes_hold_most_of_a_point_sources_light_and_skip_no_position():
    image = np.stack([_gaussian((64, 64), 30.0, 20.0, 2.0, f) for f in (100.0, 200.0, 400.0)])
    fluxes = aperture_fluxes(image, np.array([30.0, np.nan]), np.array([20.0, 5.0]), psf_fwhm=4.7)
    # 0.8 FWHM = 1.9 sigma: 83 % of a Gaussian's light
    np.testing.assert_allclose(fluxes[:, 0] / [100.0, 200.0, 400.0], 0.83, atol=0.02)
    assert (fluxes[:, 1] == 0).all()


def test_features_hold_the_looks_or_the_detectors_call_and_clipped_colours():
    prediction = {
        "p_star": np.array([0.8, 0.1]),
        "p_galaxy": np.array([0.2, 0.6]),
        "p_star_second_look": np.array([0.9, np.nan]),
        "p_false_second_look": np.array([0.05, np.nan]),
        "p_shred": np.array([np.nan, 0.3]),
    }
    fluxes = np.array([[100.0, -5.0], [250.0, 400.0], [1000.0, 0.0]])  # g, r, z
    features = instance_features(
        prediction, areas=np.array([20, 0]), fluxes=fluxes, rms=np.ones(3), psf_fwhm=4.0
    )
    assert features.shape == (2, len(FEATURES))
    assert features.dtype == np.float32
    row = dict(zip(FEATURES, features[0], strict=True))
    assert row["look_p_star"] == pytest.approx(0.9)
    assert row["look_decided"] == 1.0
    assert row["colour_band0"] == pytest.approx(-2.5 * np.log10(100 / 250), rel=1e-5)
    assert row["colour_band2"] == pytest.approx(-2.5 * np.log10(1000 / 250), rel=1e-5)
    assert row["p_shred"] == 0.0
    assert row["log_area"] == pytest.approx(np.log(20))
    other = dict(zip(FEATURES, features[1], strict=True))
    # no look decided: the detector's P(star) among its groups, nothing false
    assert other["look_p_star"] == pytest.approx(0.1 / 0.7)
    assert other["look_decided"] == 0.0
    assert other["look_p_false"] == 0.0
    assert other["p_shred"] == pytest.approx(0.3)
    # a band with no light gives a limit, never a NaN
    assert np.isfinite(features).all()
    assert feature_names(1) == FEATURES[:9]


def test_the_aperture_profile_tells_a_star_from_a_wider_source_whatever_the_units():
    shape = (64, 96)
    rms = np.array([1.0, 2.0, 4.0])
    # a star (the PSF: sigma 2 px, FWHM 4.7) and a source 1.5 times as wide, same flux
    image = np.stack(
        [
            _gaussian(shape, 30.0, 32.0, 2.0, 500.0 * s)
            + _gaussian(shape, 70.0, 32.0, 3.0, 500.0 * s)
            for s in rms
        ]
    )
    x, y = np.array([30.0, 70.0, np.nan]), np.array([32.0, 32.0, 10.0])
    profile = aperture_profile(image, rms, x, y, psf_fwhm=4.7)
    assert profile.shape == (3, len(PROFILE_FWHM) * 3)
    radius = np.array(PROFILE_FWHM).repeat(3) * 4.7
    sigma = np.tile(rms, len(PROFILE_FWHM)) * np.sqrt(np.pi) * radius
    flux = np.sinh(profile) * sigma
    # the star's shares inside 0.4 and 1.6 FWHM are a Gaussian's (1 - exp(-r^2 / 2 sigma^2))
    share = flux[0] / np.tile(500.0 * rms, len(PROFILE_FWHM))
    np.testing.assert_allclose(share, 1 - np.exp(-(radius**2) / 8.0), atol=0.03)
    # the wider source has less of its light in the small aperture against the large one
    small, large = flux[:, :3], flux[:, 3:]
    assert ((small[1] / large[1]) < 0.7 * (small[0] / large[0])).all()
    assert (profile[2] == 0).all()  # no position, no light
    # S/N: the same image in other units gives the same numbers
    np.testing.assert_allclose(
        aperture_profile(image * 7.0, rms * 7.0, x, y, psf_fwhm=4.7), profile, rtol=1e-5
    )
    assert aperture_profile(image, rms, np.array([]), np.array([]), psf_fwhm=4.7).shape == (0, 6)
    names = feature_names(3, mask_light=True, profile=True)
    assert names[: len(FEATURES) + len(MASK_LIGHT)] == FEATURES + MASK_LIGHT
    assert names[-6:] == tuple(
        f"asinh_snr_r{r:g}fwhm_band{b}" for r in PROFILE_FWHM for b in range(3)
    )


def test_the_mask_light_shows_a_mask_drawn_wide_or_over_two_sources():
    shape = (80, 120)
    rng = np.random.default_rng(3)
    rms = np.array([2.0, 4.0, 8.0])
    image = rng.normal(0.0, 1.0, (3, *shape)) * rms[:, None, None]
    for x in (30.0, 90.0):
        image += np.stack([_gaussian(shape, x, 40.0, 2.0, 800.0 * s) for s in rms])
    rows, cols = np.indices(shape)
    disc = np.hypot(cols - 30.0, rows - 40.0)
    masks = {
        "tight": disc < 4,
        "wide": disc < 12,
        "two": (disc < 4) | (np.hypot(cols - 90.0, rows - 40.0) < 4) | ((rows == 40) & (cols > 30)),
        "half": (disc < 4) | ((disc < 12) & (cols > 30)),
        "empty": np.zeros(shape, bool),
    }
    pixels = [np.nonzero(mask) for mask in masks.values()]
    light = dict(zip(masks, mask_light(image, rms, pixels, psf_fwhm=4.7), strict=True))
    tight, wide = light["tight"], light["wide"]
    assert tight[1] == pytest.approx(1.0)  # every pixel holds the source
    assert tight[2] > 0.9
    assert wide[1] < 0.5  # most are sky
    assert wide[2] < 0.2
    assert wide[0] < tight[0]  # the sky's pixels add noise, not light
    assert max(tight[3], wide[3]) < 0.1  # centred on their light
    assert light["two"][3] > 0.5  # lopsided
    assert light["half"][3] > 0.3
    assert (light["empty"] == 0).all()
    # S/N in any units: the same image in other units gives the same numbers
    again = mask_light(image * 10.0, rms * 10.0, pixels, psf_fwhm=4.7)
    np.testing.assert_allclose(again, np.stack(list(light.values())), rtol=1e-5, atol=1e-6)
    # masks given in a tile's coordinates
    shifted = [(r - 10, c - 20) for r, c in pixels[:2]]
    np.testing.assert_allclose(
        mask_light(image, rms, shifted, psf_fwhm=4.7, offset=(20, 10)),
        np.stack([tight, wide]),
        rtol=1e-6,
    )
    names = feature_names(3, mask_light=True)
    assert names == FEATURES + MASK_LIGHT


def test_retype_by_colour_decides_group_and_score_and_keeps_galaxy_types():
    shape = (64, 96)
    red = [_gaussian(shape, 20.0, 30.0, 2.0, f) for f in (100.0, 300.0, 500.0)]
    blue = [_gaussian(shape, 70.0, 30.0, 2.0, f) for f in (300.0, 300.0, 300.0)]
    image = np.stack(red) + np.stack(blue)
    rows, cols = np.indices(shape)
    pixels = [
        np.nonzero(np.hypot(cols - x, rows - 30.0) < 5) for x in (20.0, 70.0)
    ]  # the red one, the blue one
    prediction = {
        "labels": np.array([3, 1]),  # a spiral and a star
        "scores": np.array([0.9, 0.8], dtype=np.float32),
        "p_star": np.array([0.1, 0.9]),
        "p_galaxy": np.array([0.9, 0.1]),
    }

    def retyped(prediction, pixels, image=image, typer=None, **options):
        options = {"rms": np.ones(image.shape[0]), "psf_fwhm": 4.7, **options}
        return retype_by_colour(
            prediction, pixels, typer or _typer(), image=image, classes=DETECTOR_CLASSES, **options
        )

    out = retyped(prediction, pixels)
    np.testing.assert_array_equal(out["labels"], [1, 4])  # the red star; a former star: other
    # a typer that reads the aperture profile is given its features after the others
    profiled = retyped(prediction, pixels, typer=_typer(profile=True))
    np.testing.assert_array_equal(profiled["labels"], out["labels"])
    np.testing.assert_allclose(out["scores"], 1.0, atol=1e-3)
    np.testing.assert_array_equal(out["detection_scores"], out["scores"])
    np.testing.assert_allclose(out["p_star_colour"], [1.0, 0.0], atol=1e-3)
    np.testing.assert_array_equal(prediction["labels"], [3, 1])  # the input is not modified
    # an image whose g unit is a source of magnitude 26 (the typer's: 25): in the typer's
    # units its g fluxes are 2.5 times smaller, the blue source is 1 mag redder and a star
    shifted = retyped(prediction, pixels, zero_points=(26.0, 25.0, 25.0))
    np.testing.assert_array_equal(shifted["labels"], [1, 1])
    empty = retyped({k: v[:0] for k, v in prediction.items()}, [])
    assert len(empty["labels"]) == 0
    # typing only some instances leaves the others' group and scores, with no probabilities
    first = retyped(
        prediction | {"detection_scores": np.array([0.5, 0.4])}, pixels, only=[True, False]
    )
    np.testing.assert_array_equal(first["labels"], [1, 1])
    np.testing.assert_allclose(first["scores"], [1.0, 0.8], atol=1e-3)
    np.testing.assert_allclose(first["detection_scores"], [1.0, 0.4], atol=1e-3)
    np.testing.assert_allclose(first["p_star_colour"], [1.0, np.nan], atol=1e-3)
    assert np.isnan(first["p_false_colour"][1])
    # a galaxy that stays one keeps its type's probability in its class score: a spiral of
    # detection score 0.9 typed spiral at 0.6 (class score 0.54), the red one a star
    swapped = {
        **prediction,
        "labels": np.array([1, 3]),
        "scores": np.array([0.8, 0.54], dtype=np.float32),
        "detection_scores": np.array([0.8, 0.9], dtype=np.float32),
    }
    kept_type = retyped(swapped, pixels)
    np.testing.assert_array_equal(kept_type["labels"], [1, 3])
    np.testing.assert_allclose(kept_type["detection_scores"], 1.0, atol=1e-3)
    np.testing.assert_allclose(kept_type["scores"], [1.0, 0.6], atol=1e-3)
    none = retyped(prediction, pixels, only=[False, False])
    np.testing.assert_array_equal(none["labels"], prediction["labels"])
    with pytest.raises(InvalidParameterError, match="one flag per instance"):
        retyped(prediction, pixels, only=[True])
    with pytest.raises(InvalidParameterError, match="3 bands"):
        retyped(prediction, pixels, image=image[:2])


def test_the_typer_refuses_features_and_zero_points_it_cannot_take():
    typer = _typer()
    with pytest.raises(InvalidParameterError, match=r"\(n, 13\) features"):
        typer.probabilities(np.zeros((2, 5), np.float32))
    with pytest.raises(InvalidParameterError, match="3 zero points"):
        typer.unit_scales((25.0, 25.0))
    np.testing.assert_allclose(typer.unit_scales((24.0, 25.0, 27.5)), [2.5119, 1.0, 0.1], rtol=1e-4)
    assert typer.probabilities(np.zeros((0, 13), np.float32)).shape == (0, len(CLASSES))


def _red_and_blue_field() -> np.ndarray:
    """Three bands of 200x300 with two sources of one shape on either side of a tile seam
    (tiles of 128, margin 32): a red one at x = 60, a blue one at x = 150."""
    shape = (200, 300)
    rng = np.random.default_rng(1)
    bands = rng.normal(100.0, 5.0, (3, *shape))
    for x, fluxes in ((60.0, (8000.0, 24000.0, 40000.0)), (150.0, (20000.0,) * 3)):
        bands += np.stack([_gaussian(shape, x, 100.0, 3.0, f) for f in fluxes])
    return bands.astype(np.float32)


def test_the_segmenter_types_by_colour_last_in_every_tile(caplog):
    """Two sources of the same shape, one red and one blue, across a tile seam: the look
    calls both galaxies, the colour typer makes the red one a star."""
    from skysift.segment import SegmentConfig
    from test_second_look import _RecordingLook
    from test_segment import _segmenter

    image = _red_and_blue_field()
    segmenter = _segmenter(tile=128, margin=32, psf_fwhm=4.0)
    segmenter.second_looks = (_RecordingLook(-np.log(3.0)),)  # P(star) = 0.25: galaxies
    looked = segmenter(image)
    assert len(looked) == 2
    assert set(looked.classes) == {"elliptical"}
    segmenter.colour_typer = _typer()
    typed = segmenter(image)
    order = np.argsort(typed.x)
    assert list(typed.classes[order]) == ["star", "elliptical"]
    np.testing.assert_allclose(typed.scores, 1.0, atol=1e-3)
    # looks that call both stars: the typer makes the blue one a galaxy, and the galaxy
    # typer gives it a type, its probability in the class score (the morphology_score)
    from test_morphology import _FixedTyper

    segmenter.second_looks = (_RecordingLook(np.log(3.0)),)  # P(star) = 0.75
    segmenter.galaxy_typer = _FixedTyper()  # spiral, 0.8
    starred = segmenter(image)
    order = np.argsort(starred.x)
    assert list(starred.classes[order]) == ["star", "spiral"]
    np.testing.assert_allclose(starred.class_scores[order], [1.0, 0.8], atol=1e-3)
    np.testing.assert_allclose(starred.scores, 1.0, atol=1e-3)
    segmenter.galaxy_typer = None
    segmenter.second_looks = (_RecordingLook(-np.log(3.0)),)
    # a typer that learned g, r, z colours is left out, with a warning, on an image of other
    # named bands: the looks' call stands there, and the catalog's meta says why
    from skysift.image import Image
    from skysift.segment import segment

    segmenter.colour_typer.card["inputs"]["band_names"] = ["g", "r", "z"]
    with caplog.at_level(logging.WARNING, logger="skysift.segment"):
        same = segmenter(Image.from_array(image, bands=("g", "r", "z")))
        assert "colour typer" not in caplog.text
        other = segmenter(Image.from_array(image, bands=("u", "g", "r")))
    assert "image's bands are u, g, r" in caplog.text
    assert list(same.classes[np.argsort(same.x)]) == ["star", "elliptical"]
    assert set(other.classes) == {"elliptical"}
    assert other.meta["colour_typer_skipped"] == "image bands u, g, r, typer's g, r, z"
    catalog, _ = segment(Image.from_array(image, bands=("u", "g", "r")), segmenter=segmenter)
    assert "segmenter_colour_typer" not in catalog.meta
    assert catalog.meta["segmenter_colour_typer_skipped"].startswith("image bands u, g, r")
    catalog, _ = segment(Image.from_array(image, bands=("g", "r", "z")), segmenter=segmenter)
    assert "segmenter_colour_typer_skipped" not in catalog.meta
    assert catalog.meta["segmenter_colour_typer"] == segmenter.colour_typer.card["name"]
    # the catalog's P(star) is the typer's: the red source a star, the blue one a galaxy
    order = np.argsort(np.asarray(catalog["x"]))
    np.testing.assert_allclose(np.asarray(catalog["p_star_segment"])[order], [1, 0], atol=1e-3)
    # one band (read repeated by the detector) has no colours: left out, not an error
    single = segmenter(image[2])
    assert set(single.classes) == {"elliptical"}
    assert single.meta["colour_typer_skipped"] == (
        "the image has 1 band(s) (band0); the typer reads the colours of 3 bands"
    )
    with pytest.raises(InvalidParameterError, match="second_look"):
        SegmentConfig(colour_typer="colour_typer")
    with pytest.raises(InvalidParameterError, match="zero_points"):
        SegmentConfig(second_look="second_look", colour_typer="x", zero_points=(np.nan,))


def test_the_segmenter_takes_the_zero_points_from_the_bands_headers(tmp_path):
    """Bands read one file each bring their headers' MAGZP (or MAGZERO): the typer scales the
    bands by them, as by ``SegmentConfig(zero_points=)``, which wins over the headers; the
    catalog's meta says where they came from. An image of another g zero point (26 where the
    typer's is 25) holds g fluxes 2.5 times larger in its units: both sources are red."""
    from astropy.io import fits

    from skysift.io import read_image
    from skysift.segment import segment
    from test_second_look import _RecordingLook
    from test_segment import _segmenter

    image = _red_and_blue_field()
    paths = []
    for band, plane, keyword, value in zip(
        "grz", image, ("MAGZP", "MAGZERO", "MAGZP"), (26.0, 25.0, 25.0), strict=True
    ):
        header = fits.Header({"FILTER": band, keyword: value})
        fits.writeto(tmp_path / f"{band}.fits", plane, header)
        paths.append(tmp_path / f"{band}.fits")
    bands = read_image(paths)
    assert bands.header_zero_points == (26.0, 25.0, 25.0)
    assert read_image(paths[0]).header_zero_points == (26.0,)
    assert read_image(paths[1:]).header_zero_points == (25.0, 25.0)

    def typed(**options):
        segmenter = _segmenter(tile=128, margin=32, psf_fwhm=4.0, **options)
        segmenter.second_looks = (_RecordingLook(-np.log(3.0)),)
        segmenter.colour_typer = _typer()
        catalog, _ = segment(bands, segmenter=segmenter)
        order = np.argsort(np.asarray(catalog["x"]))
        return list(catalog["morphology"][order]), catalog.meta["segmenter_zero_points_from"]

    assert typed() == (["star", "star"], "headers (MAGZP or MAGZERO)")
    assert typed(zero_points=(25.0, 25.0, 25.0)) == (["star", "elliptical"], "config")
    cube = Image.from_array(image, bands=("g", "r", "z"))  # one header: no zero points
    assert cube.header_zero_points is None


def test_the_segmenter_types_only_what_its_label_map_keeps():
    """Each detection comes with a less confident twin of the same mask (a second hypothesis
    the label map paints over): the typer, which learned on the label map's instances, sees
    the two sources and not their twins, and no twin comes back in the map."""
    from skysift.segment import SegmentConfig, Segmenter
    from standins import ThresholdSegmenter
    from test_second_look import _RecordingLook
    from test_segment import CARD

    class Twins(ThresholdSegmenter):
        def forward(self, images):
            outputs = []
            for out in super().forward(images):
                twins = {key: torch.cat([value, value]) for key, value in out.items()}
                n = len(out["scores"])
                twins["scores"][n:] = twins["p_galaxy"][n:] = 0.7
                outputs.append(twins)
            return outputs

    image = _red_and_blue_field()
    config = SegmentConfig(tile=128, margin=32, psf_fwhm=4.0, galaxy_types=None)
    segmenter = Segmenter(config, module=Twins(), card=CARD)
    segmenter.second_looks = (_RecordingLook(-np.log(3.0)),)  # galaxies
    typer = _typer()
    shown = []
    typer.probabilities = lambda features: (
        shown.append(len(features)),
        ColourTyper.probabilities(typer, features),
    )[1]
    segmenter.colour_typer = typer
    typed = segmenter(image)
    assert sum(shown) == 2
    assert list(typed.classes[np.argsort(typed.x)]) == ["star", "elliptical"]
    np.testing.assert_allclose(typed.scores, 1.0, atol=1e-3)
    assert set(np.unique(typed.labels)) == {0, 1, 2}


def _instances(n: int, seed: int, *, light: bool = False) -> dict[str, np.ndarray]:
    """Typer samples in which the colour alone tells stars from galaxies (with ``light``,
    the mask's light, the aperture profile's and the star/galaxy classifier's features too,
    as noise)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    width = len(FEATURES) + (len(MASK_LIGHT) + 3 * len(PROFILE_FWHM) + 1 if light else 0)
    features = rng.normal(0.0, 1.0, (n, width)).astype(np.float32)
    features[:, G_MINUS_R] = np.where(label == 1, 1.0, 0.0) + rng.normal(0.0, 0.1, n)
    features[:, FEATURES.index("look_p_false")] = (label == 2) * 0.9
    return {
        "features": features,
        "label": label.astype(np.int64),
        "snr": rng.uniform(20.0, 200.0, n),
        "field": np.arange(n),
    }


def test_training_writes_a_typer_the_chain_can_load(tmp_path):
    from skysift.train.colour_typer import (
        ColourTyperTrainingConfig,
        finish_colour_typer,
        train_colour_typer,
        training_command,
        write_instance_cache,
    )

    run = tmp_path / "run"
    # every optional feature set
    both = {"mask_light": True, "aperture_profile": True, "stargalaxy": "stargalaxy"}
    config = ColourTyperTrainingConfig(
        run_dir=str(run), epochs=40, hidden=(16,), batch_size=64, threads=1, **both
    )
    # the chain's instances, as cached_instances leaves them, with the mask's light
    for role, seed in (("train", 0), ("validation", 1), ("test", 2)):
        write_instance_cache(config, role, _instances(600, seed, light=True))
    best = train_colour_typer(config, progress=False)
    summary = json.loads((run / "summary.json").read_text())
    assert [row["epoch"] for row in summary["history"]] == list(range(1, 41))
    assert summary["features"] == list(
        feature_names(3, mask_light=True, profile=True, stargalaxy=True)
    )
    finish_colour_typer(config, best, out_dir=tmp_path / "out", progress=False)
    card = json.loads((tmp_path / "out" / "colour_typer.json").read_text())
    assert card["training"]["command"] == (
        "skysift train colour-typer --seed 0 --mask-light --aperture-profile --stargalaxy "
        "stargalaxy --epochs 40 --threads 1"
    )
    assert card["inputs"]["band_names"] == ["g", "r", "z"]
    assert card["inputs"]["mask_light"] is True
    assert card["inputs"]["aperture_profile"] is True
    assert card["inputs"]["stargalaxy"] == "stargalaxy"
    plain = dataclasses.replace(config, mask_light=False, aperture_profile=False, stargalaxy=None)
    assert training_command(plain).endswith("--seed 0 --epochs 40 --threads 1")
    other_looks = dataclasses.replace(plain, second_look=("runs/a.json", "second_look"))
    assert "--epochs 40 --second-look runs/a.json --second-look second_look --threads 1" in (
        training_command(other_looks)
    )
    typer = ColourTyper(str(tmp_path / "out" / "colour_typer.json"))
    assert typer.mask_light
    assert typer.profile
    assert typer.stargalaxy is not None
    assert not typer.stargalaxy.calibrated  # the typer learns its own scale
    test = _instances(200, 3, light=True)
    p = typer.probabilities(test["features"])
    assert p.shape == (200, 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    # it learned the colour: stars and galaxies told apart in every S/N bin of the card
    right = [row["stars"]["right"] for row in card["metrics"]["colour_typer"]["bins"]]
    assert min(right) > 0.9
    assert (
        card["metrics"]["colour_typer"]["log_loss"]
        < card["metrics"]["chain_without_it"]["log_loss"]
    )


def _conflicting_instances(n: int, seed: int) -> dict[str, np.ndarray]:
    """Stars and galaxies told apart by g - r, the faint ones (three in four) by the
    opposite rule to the bright ones; no input says which are bright."""
    rng = np.random.default_rng(seed)
    features = rng.normal(0.0, 0.3, (n, len(FEATURES))).astype(np.float32)
    colour = rng.normal(0.0, 1.0, n)
    features[:, G_MINUS_R] = colour
    bright = rng.random(n) < 0.25
    star = np.where(bright, colour > 0, colour < 0)
    return {
        "features": features,
        "label": star.astype(np.int64),  # 0 galaxy, 1 star
        "snr": np.where(bright, 60.0, 10.0),
        "field": np.arange(n),
    }


def test_the_bright_weight_makes_the_typer_learn_what_the_figure_counts(tmp_path):
    from skysift.train.colour_typer import (
        ColourTyperTrainingConfig,
        instance_weights,
        train_colour_typer,
        training_command,
        write_instance_cache,
    )

    data = _conflicting_instances(8, 0)
    data["label"][:3] = 2  # false: counted at every cut
    weights = instance_weights(data, ColourTyperTrainingConfig(bright_weight=4.0))
    counted = (data["label"] == 2) | (data["snr"] >= 20)
    np.testing.assert_array_equal(weights, np.where(counted, 4.0, 1.0))
    with pytest.raises(InvalidParameterError, match="bright_weight"):
        ColourTyperTrainingConfig(bright_weight=0.0)

    test = _conflicting_instances(2000, 9)
    bright = test["snr"] >= 20
    right = {}
    for weight in (1.0, 10.0):
        config = ColourTyperTrainingConfig(
            run_dir=str(tmp_path / f"w{weight:g}"),
            epochs=15,
            hidden=(8,),
            batch_size=128,
            threads=1,
            bright_weight=weight,
        )
        for role, seed in (("train", 1), ("validation", 2)):
            write_instance_cache(config, role, _conflicting_instances(2000, seed))
        module = ColourTyperNet(ColourTyperConfig(features=len(FEATURES), hidden=(8,)))
        module.load_state_dict(load_file(str(train_colour_typer(config, progress=False))))
        typer = ColourTyper(
            module=module, card={"name": "t", "inputs": {"bands": 3, "zero_points": [0, 0, 0]}}
        )
        says_star = typer.probabilities(test["features"]).argmax(axis=1) == 1
        right[weight] = np.mean(says_star[bright] == (test["label"][bright] == 1))
        if weight != 1.0:
            assert "--bright-weight 10" in training_command(config)
    assert right[1.0] < 0.4  # mostly the faint majority's rule (0.31 when written)
    assert right[10.0] > 0.6  # mostly the rule of the instances the figure counts (0.71)


def test_the_chains_instances_are_labelled_by_the_figures_matching():
    """A star, a galaxy and a detection on nothing: star, galaxy and false, with the matched
    truth's S/N; the fluxes are measured on the image in its own units again."""
    from skysift.train.colour_typer import instance_samples

    shape = (64, 64)
    rng = np.random.default_rng(2)
    raw = 100.0 + rng.normal(0.0, 5.0, (3, *shape))
    raw += np.stack([_gaussian(shape, 20.0, 20.0, 2.0, f) for f in (2500.0, 7500.0, 12500.0)])
    raw += np.stack([_gaussian(shape, 44.0, 40.0, 3.0, 15000.0) for _ in range(3)])
    level, scale = np.full(3, 100.0), np.full(3, 5.0)
    rows, cols = np.indices(shape)
    discs = [
        np.hypot(cols - x, rows - y) < r for x, y, r in ((20, 20, 4), (44, 40, 6), (10, 50, 3))
    ]
    labels = np.where(discs[0], 1, np.where(discs[1], 2, 0)).astype(np.int32)
    sample = {
        "image": np.arcsinh((raw - level[:, None, None]) / (4.0 * scale[:, None, None])),
        "level": level,
        "scale": scale,
        "bad": np.zeros(shape, bool),
        "labels": labels,
        "ids": np.array([1, 2]),
        "classes": np.array([1, 2]),  # a star, an elliptical
        "snr": np.array([30.0, 60.0]),
        "unmasked": {"x": np.zeros(0), "y": np.zeros(0), "snr": np.zeros(0)},
        "psf_fwhm": 4.7,
        "seed": 7,
    }
    prediction = {
        "boxes": np.array([[16, 16, 25, 25], [38, 34, 51, 47], [7, 47, 14, 54]], np.float32),
        "labels": np.array([1, 2, 4]),
        "scores": np.array([0.9, 0.8, 0.6], np.float32),
        "p_star": np.array([0.9, 0.1, 0.3]),
        "p_galaxy": np.array([0.05, 0.8, 0.4]),
        "masks": np.stack(discs)[:, None].astype(np.float32),
    }
    data = instance_samples([prediction], [sample], star_label=1)
    np.testing.assert_array_equal(
        data["label"], [CLASSES.index(c) for c in ("star", "galaxy", "false")]
    )
    np.testing.assert_allclose(data["snr"], [30.0, 60.0, 0.0])
    assert (data["field"] == 7).all()
    colour = data["features"][:, G_MINUS_R]
    assert colour[0] == pytest.approx(2.5 * np.log10(3.0), abs=0.1)  # g is 3 x fainter
    assert colour[1] == pytest.approx(0.0, abs=0.1)
    # the benchmarks' refine() types by colour only the samples of the typer's bands, as the
    # Segmenter does on an image
    from skysift.train.segmenter import refine

    typer = _typer()
    typer.card["inputs"]["band_names"] = ["g", "r", "z"]
    classes = ("star", "elliptical", "spiral", "other")
    other = {**sample, "bands": ("g", "r", "i")}
    (kept,) = refine([prediction], [other], classes, colour_typer=typer)
    assert kept is prediction
    (typed,) = refine(
        [prediction], [{**sample, "bands": ("g", "r", "z")}], classes, colour_typer=typer
    )
    assert "p_star_colour" not in kept
    assert typed["p_star_colour"].shape == (3,)
    # a less confident twin of the galaxy, painted over by it, is dropped before typing
    twin = {key: np.concatenate([value, value[1:2]]) for key, value in prediction.items()}
    twin["scores"] = np.array([0.9, 0.8, 0.6, 0.7], np.float32)
    (typed_once,) = refine(
        [twin], [{**sample, "bands": ("g", "r", "z")}], classes, colour_typer=typer
    )
    np.testing.assert_array_equal(typed_once["labels"], typed["labels"])
    np.testing.assert_allclose(typed_once["p_star_colour"], typed["p_star_colour"])
    assert len(twin["scores"]) == 4  # the input is left alone


def test_the_typer_command_trains_on_the_looks_it_is_given(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import skysift.cli
    import skysift.train.colour_typer as training
    from skysift.cli import app

    seen = []
    monkeypatch.setattr(training, "prepare_data", lambda config, progress: None)
    monkeypatch.setattr(
        skysift.cli, "_train_then_finish", lambda config, *args, **kwargs: seen.append(config)
    )
    arguments = ["train", "colour-typer", "--run-dir", str(tmp_path), "-q"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        app, [*arguments, "--second-look", "runs/a.json", "--second-look", "second_look"]
    )
    assert result.exit_code == 0, result.output
    assert seen[0].second_look == training.ColourTyperTrainingConfig().second_look
    assert seen[1].second_look == ("runs/a.json", "second_look")
    assert training.training_command(seen[1]).endswith(
        "--second-look runs/a.json --second-look second_look"
    )


def test_the_stargalaxy_feature_is_the_classifiers_logit_at_the_given_seeing():
    """The typer's star/galaxy input: the classifier's raw P(star) as a clipped logit, read
    on the middle band with the PSF FWHM as its seeing; positions that are not finite give
    0 and leave the classifier uncalled for them."""
    from skysift.colour_typer import LOGIT_LIMIT, stargalaxy_logits
    from test_stargalaxy import _tiny_classifier

    classifier = _tiny_classifier()
    classifier.calibrated = False
    bands = np.stack([_gaussian((64, 64), 30.0, 30.0, 2.0, f) for f in (100.0, 400.0, 300.0)])
    x, y = np.array([30.0, np.nan, 12.0]), np.array([30.0, 3.0, 50.0])
    logits = stargalaxy_logits(bands, x, y, psf_fwhm=4.2, classifier=classifier)
    assert classifier.seeing_fwhm == 4.2 or not classifier.config.seeing_input
    assert logits[1] == 0.0
    assert logits.dtype == np.float32  # the typer's features are float32
    assert np.all(np.abs(logits) <= LOGIT_LIMIT)
    raw, _ = classifier(Image.from_array(bands[1]), x[[0, 2]], y[[0, 2]], seeing_fwhm=4.2)
    p = np.asarray(raw, float)
    np.testing.assert_allclose(logits[[0, 2]], np.log(p / (1 - p)), rtol=1e-5)


def test_the_stargalaxy_feature_computes_a_bands_background_once_per_image():
    """The Segmenter types an image tile by tile with one array: the classifier's plane (the
    band's background) is computed for its first tile only, and again for a new array; the
    logits do not depend on it."""
    from skysift.colour_typer import stargalaxy_logits
    from test_stargalaxy import _tiny_classifier

    classifier = _tiny_classifier()
    made = []
    real = classifier.plane
    classifier.plane = lambda image, band=None: made.append(1) or real(image, band)
    bands = np.stack([_gaussian((64, 64), 30.0, 30.0, 2.0, f) for f in (100.0, 400.0, 300.0)])
    first = stargalaxy_logits(
        bands, np.array([30.0]), np.array([30.0]), psf_fwhm=4.0, classifier=classifier
    )
    again = stargalaxy_logits(
        bands, np.array([30.0]), np.array([30.0]), psf_fwhm=4.0, classifier=classifier
    )
    assert len(made) == 1
    np.testing.assert_array_equal(first, again)
    stargalaxy_logits(
        bands.copy(), np.array([30.0]), np.array([30.0]), psf_fwhm=4.0, classifier=classifier
    )
    assert len(made) == 2


def test_the_chains_instances_come_from_the_named_fields_and_a_cache_keeps_its_run(
    monkeypatch, tmp_path
):
    import skysift.train.colour_typer as training
    import skysift.train.segmenter as segmenter

    asked = []

    def named_images(directory, configs):
        asked.append([c.seed for c in configs])
        return [{"seed": c.seed} for c in configs]

    class Classes:
        classes = ("star", "elliptical", "spiral", "other")

    module = type("Detector", (), {"skysift_config": Classes()})()
    monkeypatch.setattr(training, "chain_parts", lambda config: (module, (), None, None))
    monkeypatch.setattr(segmenter, "named_images", named_images)
    monkeypatch.setattr(segmenter, "network_images", lambda module, chunk: chunk)
    monkeypatch.setattr(segmenter, "predict", lambda module, images: images)
    monkeypatch.setattr(segmenter, "refine", lambda predictions, *args, **kwargs: predictions)
    monkeypatch.setattr(
        training,
        "instance_samples",
        lambda refined, chunk, **kwargs: {"field": np.array([s["seed"] for s in chunk])},
    )
    config = training.ColourTyperTrainingConfig(run_dir=str(tmp_path), n_train_fields=3)
    data = training.cached_instances(config, "train", progress=False)
    seeds = [c.seed for c in training.field_configs("train", 3)]
    assert asked == [seeds]  # those fields alone, whatever else the folder holds
    np.testing.assert_array_equal(data["field"], seeds)
    again = training.cached_instances(config, "train", progress=False)
    assert len(asked) == 1  # read back, the chain not run again
    np.testing.assert_array_equal(again["field"], seeds)
    assert set(again) == {"field"}
    # another run's fields, chain or features in the same folder: refused by name
    path = tmp_path / "instances_train.npz"
    for other in (
        dataclasses.replace(config, n_train_fields=4),
        dataclasses.replace(config, star_fraction=0.3),
        dataclasses.replace(config, second_look=("second_look_reject",)),
    ):
        with pytest.raises(InvalidParameterError, match=r"instances_train\.npz: computed by"):
            training.cached_instances(other, "train", progress=False)
    # a cache from before the settings were kept is not taken for this run's either
    np.savez(path, field=np.arange(3))
    with pytest.raises(InvalidParameterError, match="computed by another run"):
        training.cached_instances(config, "train", progress=False)
