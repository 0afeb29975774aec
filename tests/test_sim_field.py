"""Simulated fields: determinism, truth accuracy, noise model, artifacts, crowding, outputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from skysift.errors import InvalidParameterError
from skysift.sim import DENSITIES, FieldConfig, simulate_field


def _isolated(truth, min_distance):
    from scipy.spatial import cKDTree

    xy = np.column_stack([truth["x"], truth["y"]])
    distances, _ = cKDTree(xy).query(xy, k=2)
    return distances[:, 1] > min_distance


def test_same_config_gives_identical_pixels_and_truth():
    config = FieldConfig(survey="sdss", size=96, density=40, seed=2_000_201)
    first, second = simulate_field(config), simulate_field(config)
    np.testing.assert_array_equal(first.image.data, second.image.data)
    np.testing.assert_array_equal(first.footprints, second.footprints)
    assert first.truth.pformat(max_lines=-1) == second.truth.pformat(max_lines=-1)
    other = simulate_field(dataclasses.replace(config, seed=2_000_202))
    assert not np.array_equal(first.image.data, other.image.data)


def test_parallel_and_serial_rendering_agree():
    from skysift.sim import render

    config = FieldConfig(survey="meerlicht", size=128, density=150, seed=2_000_203)
    original = render.PARALLEL_MIN_SOURCES
    try:
        render.PARALLEL_MIN_SOURCES = 10  # force the two-chunk path on a small field
        serial = render.render_sources  # same function; compare workers=1 and workers=2
        field = simulate_field(config.without_artifacts())
        from skysift.sim.field import _draw_population  # noqa: F401 - documented internal

        sky = np.full((1, 128, 128), 500.0, np.float32)
        sources = _sources_of(config)
        one = serial(
            sources, preset=field.preset, psf=field.psf, shape=(128, 128), sky=sky, workers=1
        )
        two = serial(
            sources, preset=field.preset, psf=field.psf, shape=(128, 128), sky=sky, workers=2
        )
    finally:
        render.PARALLEL_MIN_SOURCES = original
    np.testing.assert_array_equal(one.noiseless, two.noiseless)
    np.testing.assert_array_equal(one.footprints, two.footprints)
    np.testing.assert_array_equal(one.snr, two.snr)


def _sources_of(config):
    from skysift.sim.field import _draw_population
    from skysift.sim.presets import get_preset, point_source_depth
    from skysift.sim.psf import VaryingPSF

    preset = get_preset(config.survey)
    psf = VaryingPSF(
        fwhm_centre=2.5,
        beta=3.0,
        centre=(64, 64),
        reference_radius=90,
        pixel_scale=preset.pixel_scale,
    )
    depth = point_source_depth(preset, "q", fwhm=2.5)
    return _draw_population(config, preset, psf, depth, np.random.default_rng(1))


@pytest.mark.parametrize("survey", ["meerlicht", "decals"])
def test_truth_positions_are_flux_weighted_centroids(survey):
    """Each source's noiseless light is centred on its truth position within 0.05 px."""
    from skysift.sim.presets import get_preset
    from skysift.sim.psf import VaryingPSF
    from skysift.sim.render import render_sources
    from skysift.sim.sources import make_galaxy, make_star

    preset = get_preset(survey)
    rng = np.random.default_rng(5)
    size, spacing = 800, 200
    # strong PSF variation: elongated, larger PSFs away from the centre are the hard case
    psf = VaryingPSF(
        fwhm_centre=sum(preset.psf_fwhm_range) / 2,
        beta=preset.psf_beta,
        centre=(0.0, 0.0),
        reference_radius=800.0,
        size_growth=0.3,
        ellipticity_edge=0.15,
        pixel_scale=preset.pixel_scale,
    )
    kinds = ["star", "elliptical", "disk", "compact", "spiral", "star", "disk", "elliptical"]
    sources = []
    for number, kind in enumerate(kinds):
        x = spacing / 2 + spacing * (number % 4) + rng.uniform(-0.5, 0.5)
        y = spacing / 2 + spacing * (number // 4) * 2 + rng.uniform(-0.5, 0.5)
        if kind == "star":
            sources.append(make_star(rng, number + 1, x, y, 17.0, preset))
        else:
            sources += make_galaxy(
                rng,
                number + 1,
                x,
                y,
                17.5,
                kind,
                preset,
                psf_fwhm=float(psf.fwhm_at(x, y)),
                first_clump_id=100,
            )
    sky = np.full((len(preset.bands), size, size), 100.0, np.float32)
    rendered = render_sources(sources, preset=preset, psf=psf, shape=(size, size), sky=sky)
    light = rendered.noiseless[0].astype(np.float64)
    yy, xx = np.indices(light.shape)
    for source in sources:
        window = (np.abs(xx - source.x) < spacing / 2) & (np.abs(yy - source.y) < spacing / 2)
        weights = np.where(window, light, 0.0)
        cx, cy = (weights * xx).sum() / weights.sum(), (weights * yy).sum() / weights.sum()
        assert abs(cx - source.x) < 0.05, (source.galaxy_type, cx - source.x)
        assert abs(cy - source.y) < 0.05, (source.galaxy_type, cy - source.y)


def test_background_noise_matches_model():
    config = FieldConfig(
        survey="meerlicht", size=256, density=1, seed=2_000_204, star_fraction=1.0
    ).without_artifacts()
    field = simulate_field(config)
    residual = (field.image.data[0] - field.background[0]) / field.noise_sigma[0]
    empty = (field.footprints == 0) & (field.noiseless[0] < 0.01 * field.noise_sigma[0])
    assert empty.sum() > 20_000
    assert np.std(residual[empty]) == pytest.approx(1.0, abs=0.05)
    assert np.mean(residual[empty]) == pytest.approx(0.0, abs=0.02)


def test_star_snr_matches_aperture_measurement():
    """Truth S/N (PSF-optimal) agrees with the best circular-aperture S/N within 15 %."""
    from photutils.aperture import CircularAperture, aperture_photometry

    config = FieldConfig(
        survey="meerlicht",
        size=256,
        density=8,
        seed=2_000_205,
        star_fraction=1.0,
        psf_size_growth=0.0,
        psf_ellipticity_edge=0.0,
    ).without_artifacts()
    field = simulate_field(config)
    truth = field.truth
    fwhm_px = field.info["psf_fwhm"] / field.preset.pixel_scale
    chosen = np.flatnonzero(
        (np.asarray(truth["snr"]) > 15)
        & (np.asarray(truth["snr"]) < 300)
        & _isolated(truth, 6 * fwhm_px)
    )
    assert chosen.size
    data = field.image.data[0] - field.background[0]
    gain = field.preset.gain
    for index in chosen[:3]:
        position = (truth["x"][index], truth["y"][index])
        best = 0.0
        for radius in np.linspace(0.4, 1.6, 13) * fwhm_px:
            aperture = CircularAperture(position, r=radius)
            signal = aperture_photometry(np.asarray(field.noiseless[0]), aperture)
            variance = field.noise_sigma[0] ** 2 + np.maximum(field.noiseless[0], 0) / gain
            noise = np.sqrt(aperture_photometry(variance, aperture)["aperture_sum"][0])
            measured = aperture_photometry(data, aperture)["aperture_sum"][0]
            best = max(best, signal["aperture_sum"][0] / noise)
            assert measured == pytest.approx(signal["aperture_sum"][0], abs=4 * noise)
        assert best / truth["snr"][index] == pytest.approx(0.93, abs=0.08)


@pytest.mark.parametrize(
    "kind", ["cosmic_ray", "hot_pixel", "satellite_trail", "bad_column", "saturated"]
)
def test_each_artifact_is_where_its_mask_says(artifact_field, kind):
    field = artifact_field
    mask = field.artifact_mask(kind)
    assert mask.any(), f"the fixture should contain {kind}"
    residual = (field.image.data[0] - field.background[0] - field.noiseless[0]) / (
        field.noise_sigma[0]
    )
    if kind == "saturated":
        # the full well, shifted by the amplifier offsets (a few ADU)
        offset_room = 5 * field.config.amplifier_offset
        level = field.preset.saturation
        assert np.all(np.abs(field.image.data[0][mask] - level) <= offset_room)
        bleed = field.artifact_mask("bleed")
        assert bleed.any()
        assert not (bleed & mask).any()
        assert np.median(field.image.data[0][bleed]) > level - offset_room
        return
    if kind == "bad_column":
        records = [r for r in field.artifacts.records if r["kind"] == "bad_column"]
        for record in records:
            column = int(record["x"])
            rows = field.artifacts.label_map[:, column] == record["id"]
            values = residual[rows, column]
            if record["peak"] == 0.0:  # dead: no sky and no light, only offset and read noise
                assert np.median(values) < -5
            else:
                assert np.median(values) > 30
        return
    assert np.median(residual[mask]) > 1.0
    # outside every artifact and source, nothing stands out
    clean = (field.artifacts.label_map == 0) & (field.footprints == 0)
    assert np.mean(np.abs(residual[clean]) > 5) < 1e-4


def test_artifact_table_counts_and_labels(artifact_field):
    table = artifact_field.artifacts.table()
    assert set(table["kind"]) >= {"cosmic_ray", "hot_pixel", "bad_column", "satellite_trail"}
    labels = np.unique(artifact_field.artifacts.label_map)
    assert set(labels[labels > 0]) <= set(table["id"])


def test_artifacts_do_not_move_sources():
    config = FieldConfig(survey="meerlicht", size=128, density=20, seed=2_000_206)
    with_artifacts = simulate_field(config)
    without = simulate_field(config.without_artifacts())
    np.testing.assert_array_equal(with_artifacts.truth["x"], without.truth["x"])
    np.testing.assert_array_equal(with_artifacts.noiseless, without.noiseless)


def test_footprints_and_localization_mask(clean_field):
    truth = clean_field.truth
    labels = np.unique(clean_field.footprints)
    assert set(labels[labels > 0]) <= set(truth["id"][~truth["is_shred"]])
    areas = np.bincount(clean_field.footprints.ravel(), minlength=truth["id"].max() + 1)
    np.testing.assert_array_equal(areas[truth["id"]], truth["footprint_area"])
    localizable = (np.asarray(truth["snr"]) >= 3) & _isolated(truth, 6)
    inside = (truth["x"] > 3) & (truth["x"] < 188) & (truth["y"] > 3) & (truth["y"] < 188)
    for index in np.flatnonzero(localizable & inside)[:5]:
        row, col = round(truth["y"][index]), round(truth["x"][index])
        patch = clean_field.localization_mask[row - 2 : row + 3, col - 2 : col + 3]
        assert patch.sum() == 13
        assert patch[2, 2]
        assert not patch[0, 0]


def test_psf_grows_towards_the_edges():
    config = FieldConfig(
        survey="meerlicht", size=256, density=30, seed=2_000_207, psf_size_growth=0.3
    )
    field = simulate_field(config.without_artifacts())
    radius = np.hypot(field.truth["x"] - 127.5, field.truth["y"] - 127.5)
    fwhm = field.truth["psf_fwhm"].value
    assert fwhm[radius > 150].mean() > 1.15 * fwhm[radius < 40].mean()
    flat = simulate_field(
        dataclasses.replace(
            config, psf_size_growth=0.0, psf_ellipticity_edge=0.0
        ).without_artifacts()
    )
    assert np.ptp(flat.truth["psf_fwhm"].value) == 0


@pytest.mark.parametrize("name", ["sparse", "crowded"])
def test_density_counts_sources_brighter_than_depth(name):
    config = FieldConfig(survey="decals", size=320, density=name, seed=2_000_208)
    field = simulate_field(config.without_artifacts())
    truth = field.truth
    area = (320 * field.preset.pixel_scale / 60) ** 2
    detectable = np.sum(
        (truth[f"mag_{field.preset.detection_band}"].value < field.info["depth_5sigma"])
        & ~truth["is_shred"]
    )
    expected = DENSITIES[name] * area
    assert abs(detectable - expected) < 4 * np.sqrt(expected) + 2


def test_cluster_concentrates_stars():
    config = FieldConfig(
        survey="meerlicht",
        size=256,
        density=60,
        seed=2_000_209,
        star_fraction=1.0,
        cluster_fraction=0.8,
        cluster_radius=15.0,
    )
    truth = simulate_field(config.without_artifacts()).truth
    radius = np.hypot(truth["x"] - 127.5, truth["y"] - 127.5)
    inner = np.sum(radius < 40) / (np.pi * 40**2)
    outer = np.sum(radius > 100) / (256**2 - np.pi * 100**2)
    assert inner > 10 * outer


def _clumpy_central(**options) -> FieldConfig:
    """A bright clumpy disk at the centre of a sparse DECaLS field, no artifacts."""
    return FieldConfig(
        survey="decals",
        density=3,
        seed=2_000_210,
        central_galaxy="clumpy",
        central_mag=17.0,
        **options,
    ).without_artifacts()


def test_clumpy_galaxy_has_shreds_pointing_at_it():
    truth = simulate_field(_clumpy_central(size=256)).truth
    central = truth[truth["id"] == 1][0]
    assert central["galaxy_type"] == "clumpy"
    assert central["morphology"] == "other"
    shreds = truth[truth["parent_id"] == 1]
    assert len(shreds) >= 2
    assert np.all(shreds["is_shred"])
    assert np.all(shreds["morphology"] == "clump")
    assert np.all(shreds["class"] == "galaxy")
    separation = np.hypot(shreds["x"] - central["x"], shreds["y"] - central["y"])
    assert np.all(separation * 0.262 <= 2.5 * central["hlr"].value * 1.01)
    # clumps are blue star-forming regions: bluer g - z than their parent
    assert np.all(
        (shreds["mag_g"] - shreds["mag_z"]).value < (central["mag_g"] - central["mag_z"]).value
    )


def test_clumps_join_their_parents_footprint_on_request():
    """A clump beyond its parent's isophote lies on sky in the footprint map, unless
    ``clumps_in_footprints`` gives the pixels it outshines everything in to the parent."""
    config = _clumpy_central(size=128, footprint_nsigma=2.0)
    apart = simulate_field(config)
    joined = simulate_field(dataclasses.replace(config, clumps_in_footprints=True))
    np.testing.assert_array_equal(apart.image.data, joined.image.data)
    changed = apart.footprints != joined.footprints
    assert changed.sum() > 20
    assert np.all(apart.footprints[changed] == 0)
    assert np.all(joined.footprints[changed] == 1)
    shreds = joined.truth[joined.truth["parent_id"] == 1]
    rows, cols = np.round(shreds["y"]).astype(int), np.round(shreds["x"]).astype(int)
    assert np.any(apart.footprints[rows, cols] == 0)
    assert np.all(joined.footprints[rows, cols] == 1)
    assert not np.isin(joined.footprints, shreds["id"]).any()
    assert joined.truth["footprint_area"][0] == apart.truth["footprint_area"][0] + changed.sum()


def test_peak_fraction_footprints_follow_each_sources_own_peak():
    """Burke et al.'s rule: a source's mask is where its noiseless light reaches a fixed
    fraction of its own peak (smoothed), so it does not shrink with the flux as the noise
    isophote does (a central galaxy 4 magnitudes fainter is also 4 times smaller here, so
    both shrink, the isophote far more); the pixels are the same, only the footprints
    change."""
    from scipy import ndimage

    from skysift.sim import BURKE_PEAK_FRACTIONS

    config = FieldConfig(survey="decals", size=128, density=2, seed=2_000_215).without_artifacts()
    sizes = {}
    for mag in (18.0, 22.0):
        bright = dataclasses.replace(config, central_galaxy="elliptical", central_mag=mag)
        isophote = simulate_field(dataclasses.replace(bright, footprint_nsigma=2.0))
        burke = simulate_field(
            dataclasses.replace(bright, footprint_peak_fractions=BURKE_PEAK_FRACTIONS)
        )
        np.testing.assert_array_equal(isophote.image.data, burke.image.data)
        central = burke.truth[burke.truth["id"] == 1][0]
        assert central["footprint_area"] == np.sum(burke.footprints == 1) > 0
        sizes[mag] = (np.sum(isophote.footprints == 1), np.sum(burke.footprints == 1))
        # the rule, checked on the isolated central galaxy's own light
        light = burke.noiseless[burke.image.bands.index("r")]
        mask = burke.footprints == 1
        near = ndimage.binary_erosion(mask, iterations=3)
        far = ~ndimage.binary_dilation(mask, iterations=3)
        peak = light[mask].max()
        assert np.all(light[near] >= 0.5 * BURKE_PEAK_FRACTIONS[1] * peak)
        assert np.all(light[far & (np.abs(burke.footprints) == 0)] < 2 * 0.08 * peak)
    (iso_bright, burke_bright), (iso_faint, burke_faint) = sizes[18.0], sizes[22.0]
    assert burke_faint / burke_bright > 0.5
    assert iso_faint / iso_bright < 0.5 * burke_faint / burke_bright
    field = simulate_field(
        dataclasses.replace(config, density=30, footprint_peak_fractions=BURKE_PEAK_FRACTIONS)
    )
    truth = field.truth[~field.truth["is_shred"]]
    stars, galaxies = truth[truth["class"] == "star"], truth[truth["class"] == "galaxy"]
    assert len(stars) > 0
    assert len(galaxies) > 0
    # stars reach far into their wings (0.5 %), and even the faintest own pixels
    assert np.median(stars["footprint_area"]) > np.median(galaxies["footprint_area"])
    assert np.median(truth["footprint_area"][truth["snr"] < 3]) > 20


def test_invalid_peak_fractions_are_refused():
    for bad in ((0.0, 0.08), (0.005, 1.0), (0.005,)):
        with pytest.raises(InvalidParameterError, match="footprint_peak_fractions"):
            FieldConfig(footprint_peak_fractions=bad)
    config = FieldConfig(footprint_peak_fractions=[0.005, 0.08])
    assert config.footprint_peak_fractions == (0.005, 0.08)


@pytest.mark.parametrize("kind", ["elliptical", "spiral"])
def test_central_galaxy_morphology(kind):
    config = FieldConfig(
        survey="sdss", size=128, density=2, seed=2_000_211, central_galaxy=kind, central_mag=15.5
    )
    field = simulate_field(config.without_artifacts())
    central = field.truth[field.truth["id"] == 1][0]
    assert central["morphology"] == kind
    assert field.footprints[64, 64] == 1
    assert central["footprint_area"] > 200


def test_multiband_colours_and_band_psf():
    field = simulate_field(FieldConfig(survey="decals", size=96, density=30, seed=2_000_212))
    assert field.image.bands == ("g", "r", "z")
    stars = field.truth[field.truth["class"] == "star"]
    assert np.all(stars["flux_g"] != stars["flux_z"])


def test_invalid_configs_are_refused():
    with pytest.raises(InvalidParameterError, match="unknown survey preset 'hst'"):
        FieldConfig(survey="hst")
    with pytest.raises(InvalidParameterError, match="density 'packed' is not a number"):
        FieldConfig(density="packed")
    with pytest.raises(InvalidParameterError, match="star_fraction must be in"):
        FieldConfig(star_fraction=1.5)
    with pytest.raises(InvalidParameterError, match="central_galaxy must be one of"):
        FieldConfig(central_galaxy="irregular")
    with pytest.raises(InvalidParameterError, match="size must be >= 16"):
        FieldConfig(size=8)


def test_coma_makes_the_psf_lopsided_outwards_with_its_centroid_kept():
    """The coma flare points away from the optical centre, grows with the distance, and the
    light's centroid stays at the source position (the truth convention)."""
    from skysift.errors import InvalidParameterError
    from skysift.sim.psf import VaryingPSF

    def moments(psf, x, y):
        image = psf.at(x, y).drawImage(nx=201, ny=201, scale=0.5, method="no_pixel").array
        rows, cols = np.mgrid[:201, :201] - 100.0
        total = image.sum()
        cx, cy = (image * cols).sum() / total, (image * rows).sum() / total
        skew = (image * (cols - cx) ** 3).sum() / total  # third moment along x
        _, peak_col = np.unravel_index(np.argmax(image), image.shape)
        return cx, cy, skew, peak_col - 100

    options = {"fwhm_centre": 2.5, "beta": 3.0, "centre": (0.0, 0.0), "reference_radius": 1000.0}
    psf = VaryingPSF(**options, size_growth=0.0, ellipticity_edge=0.0, coma_edge=0.3)
    cx, cy, skew_edge, peak_edge = moments(psf, 1000.0, 0.0)  # on the +x axis, rho = 1
    assert abs(cx) < 0.01
    assert abs(cy) < 0.01
    assert skew_edge > 0  # the flare extends outwards (+x)
    assert peak_edge < 0  # the core sits inwards of the centroid
    _, _, skew_mid, _ = moments(psf, 300.0, 0.0)
    assert 0 < skew_mid < skew_edge
    symmetric = VaryingPSF(**options, size_growth=0.0, ellipticity_edge=0.0)
    assert abs(moments(symmetric, 1000.0, 0.0)[2]) < 1e-6
    assert psf.coma_at(0.0, 0.0) == 0.0
    with pytest.raises(InvalidParameterError, match="coma_edge"):
        VaryingPSF(**options, coma_edge=0.6)
