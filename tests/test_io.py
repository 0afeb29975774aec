"""read_image: formats, masks, WCS, and every bad-input case with its error class."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from skysift import read_image
from skysift.errors import (
    FitsFileNotFoundError,
    FitsFormatError,
    ImageShapeError,
    InvalidParameterError,
    MaskedImageError,
    SkysiftError,
    WCSWarning,
)
from skysift.image import Image


def _wcs_header(shape=(64, 64), scale_arcsec=0.5):
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [shape[1] / 2, shape[0] / 2]
    wcs.wcs.cd = [[-scale_arcsec / 3600, 0], [0, scale_arcsec / 3600]]
    return wcs.to_header()


@pytest.fixture
def pixels(rng):
    return rng.normal(100.0, 5.0, (64, 80)).astype(">f4")  # FITS is big-endian


def _write(path, data, header=None, **kwargs):
    fits.PrimaryHDU(data, header=header).writeto(path, **kwargs)
    return path


def test_primary_hdu_becomes_native_float32(tmp_path, pixels):
    path = _write(tmp_path / "img.fits", pixels, _wcs_header(pixels.shape))
    image = read_image(path)
    assert image.data.shape == (1, 64, 80)
    assert image.data.dtype == np.float32
    assert image.data.dtype.isnative
    np.testing.assert_array_equal(image.data[0], pixels.astype(np.float32))
    assert not image.mask.any()
    assert image.wcs is not None
    assert image.pixel_scale == pytest.approx(0.5)
    assert image.path == str(path)


def test_image_is_read_only(tmp_path, pixels):
    image = read_image(_write(tmp_path / "img.fits", pixels))
    with pytest.raises(ValueError, match="read-only"):
        image.data[0, 0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        image.mask[0, 0] = True


def test_named_numbered_and_compressed_hdus(tmp_path, pixels):
    sci = fits.ImageHDU(pixels, name="SCI")
    other = fits.ImageHDU(pixels * 2, name="VAR")
    compressed = fits.CompImageHDU(
        np.asarray(pixels, dtype=np.float32) * 3,
        name="COMP",
        quantize_level=0.0,
        compression_type="GZIP_2",
    )
    path = tmp_path / "mef.fits"
    fits.HDUList([fits.PrimaryHDU(), sci, other, compressed]).writeto(path)
    by_default = read_image(path)  # first HDU with data: SCI
    np.testing.assert_allclose(by_default.data[0], pixels)
    np.testing.assert_allclose(read_image(path, hdu="VAR").data[0], pixels * 2)
    np.testing.assert_allclose(read_image(path, hdu=2).data[0], pixels * 2)
    np.testing.assert_allclose(read_image(path, hdu="COMP").data[0], pixels * 3, rtol=1e-6)


def test_compressed_file_by_default(tmp_path, pixels):
    path = tmp_path / "c.fits.fz"
    # fpack's default: RICE with quantization to 1/16 of the noise (lossy)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(np.asarray(pixels, np.float32))]).writeto(
        path
    )
    np.testing.assert_allclose(read_image(path).data[0], pixels, atol=0.5)


def test_several_files_are_bands_named_from_headers(tmp_path, pixels):
    paths = []
    for offset, band in enumerate("grz"):
        header = fits.Header({"FILTER": band})
        paths.append(_write(tmp_path / f"f{band}.fits", pixels + offset, header))
    image = read_image(paths)
    assert image.bands == ("g", "r", "z")
    assert image.data.shape == (3, 64, 80)
    np.testing.assert_allclose(image.band("z"), pixels + 2)


def test_seeing_is_the_middle_bands_own_when_each_band_is_a_file(tmp_path, pixels):
    """The bluer band's seeing is wider: a model that takes the detection band's FWHM must get
    the middle file's SEEING, not the first file's."""
    paths = []
    for band, seeing in zip("gri", (1.5, 1.4, "n/a"), strict=True):
        header = _wcs_header(pixels.shape)
        header.update({"FILTER": band, "SEEING": seeing})
        paths.append(_write(tmp_path / f"f{band}.fits", pixels, header))
    image = read_image(paths)
    assert image.meta["band_seeing"] == (1.5, 1.4, None)
    assert image.header_fwhm == pytest.approx(1.4 / 0.5)
    one = read_image(paths[0])
    assert "band_seeing" not in one.meta
    assert one.header_fwhm == pytest.approx(1.5 / 0.5)
    assert read_image(paths[2]).header_fwhm is None  # not a number: no seeing


def test_cube_is_bands_and_names_can_be_given(tmp_path, pixels):
    cube = np.stack([pixels, pixels + 1])
    image = read_image(_write(tmp_path / "cube.fits", cube), bands=["g", "r"])
    assert image.bands == ("g", "r")
    np.testing.assert_allclose(image.band(1), pixels + 1)


def test_degenerate_leading_axes_are_dropped(tmp_path, pixels):
    image = read_image(_write(tmp_path / "radio.fits", pixels[np.newaxis, np.newaxis]))
    assert image.data.shape == (1, 64, 80)


def test_nan_inf_mask_and_weight_files(tmp_path, pixels):
    data = np.array(pixels, dtype=np.float32)
    data[3, 4] = np.nan
    data[5, 6] = np.inf
    image_path = _write(tmp_path / "img.fits", data)
    mask = np.zeros(data.shape, np.uint8)
    mask[10, 11] = 1
    weight = np.ones(data.shape, np.float32)
    weight[20, 21] = 0.0
    mask_path = _write(tmp_path / "mask.fits", mask)
    weight_path = _write(tmp_path / "weight.fits", weight)
    image = read_image(image_path, mask=mask_path, weight=weight_path)
    assert set(zip(*np.nonzero(image.mask), strict=True)) == {(3, 4), (5, 6), (10, 11), (20, 21)}


@pytest.mark.parametrize("dtype", [np.int16, np.uint8, np.int32, np.float64])
def test_integer_and_float64_images_are_converted(tmp_path, dtype):
    data = (np.arange(64 * 64) % 200).reshape(64, 64).astype(dtype)
    image = read_image(_write(tmp_path / "int.fits", data))
    assert image.data.dtype == np.float32
    np.testing.assert_array_equal(image.data[0], data.astype(np.float32))


def test_unsigned_16_bit_with_bzero(tmp_path):
    data = np.full((40, 40), 60000, dtype=np.uint16)
    path = tmp_path / "u16.fits"
    fits.PrimaryHDU(data).writeto(path)
    assert read_image(path).data[0, 0, 0] == 60000.0


def test_boolean_array_is_converted():
    image = Image.from_array(np.eye(40, dtype=bool))
    assert image.data.dtype == np.float32
    assert image.data[0, 0, 0] == 1.0


def test_section_reads_part_and_shifts_wcs(tmp_path, pixels):
    path = _write(tmp_path / "img.fits", pixels, _wcs_header(pixels.shape))
    full = read_image(path)
    part = read_image(path, section=(slice(10, 50), slice(20, 70)))
    np.testing.assert_array_equal(part.data[0], full.data[0, 10:50, 20:70])
    np.testing.assert_allclose(
        part.wcs.pixel_to_world_values(0, 0), full.wcs.pixel_to_world_values(20, 10)
    )


def test_broken_wcs_warns_and_is_dropped(tmp_path, pixels):
    header = _wcs_header(pixels.shape)
    header["CTYPE1"] = "RA---XYZ"  # no such projection
    path = _write(tmp_path / "bad_wcs.fits", pixels, header)
    with pytest.warns(WCSWarning, match="bad_wcs.fits"):
        image = read_image(path)
    assert image.wcs is None


def test_no_wcs_is_silent(tmp_path, pixels):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image = read_image(_write(tmp_path / "plain.fits", pixels))
    assert image.wcs is None
    assert image.pixel_scale is None


def test_inputs_are_not_mutated(tmp_path, pixels):
    path = _write(tmp_path / "img.fits", pixels)
    before = path.read_bytes()
    read_image(path)
    assert path.read_bytes() == before
    array = np.array(pixels, dtype=np.float32)
    array[0, 0] = np.nan
    copy = array.copy()
    Image.from_array(array)
    np.testing.assert_array_equal(array, copy)


# -- bad input: each case raises a SkysiftError subclass naming the problem -------------------


def test_missing_file(tmp_path):
    with pytest.raises(FitsFileNotFoundError, match=r"nope\.fits: no such file"):
        read_image(tmp_path / "nope.fits")


def test_not_a_fits_file(tmp_path):
    path = tmp_path / "notes.fits"
    path.write_text("hello, I am text\n" * 200)
    with pytest.raises(FitsFormatError, match=r"notes.fits: not a FITS file"):
        read_image(path)


def test_truncated_file(tmp_path, rng):
    path = _write(tmp_path / "full.fits", rng.normal(size=(200, 200)).astype(np.float32))
    cut = tmp_path / "cut.fits"
    cut.write_bytes(path.read_bytes()[:20000])
    with pytest.raises(FitsFormatError, match=r"cut.fits.*truncated"):
        read_image(cut)


def test_no_image_hdu(tmp_path):
    table = fits.BinTableHDU.from_columns([fits.Column(name="a", format="E", array=[1.0, 2.0])])
    path = tmp_path / "table.fits"
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
    with pytest.raises(FitsFormatError, match=r"table.fits: no HDU holds image data"):
        read_image(path)


def test_hdu_out_of_range_or_unknown(tmp_path, pixels):
    path = _write(tmp_path / "img.fits", pixels)
    with pytest.raises(FitsFormatError, match=r"img.fits: HDU 5 not found; the file has 1"):
        read_image(path, hdu=5)
    with pytest.raises(FitsFormatError, match=r"HDU 'SCI' not found"):
        read_image(path, hdu="SCI")


def test_table_hdu_requested(tmp_path):
    table = fits.BinTableHDU.from_columns(
        [fits.Column(name="a", format="E", array=[1.0])], name="CAT"
    )
    path = tmp_path / "t.fits"
    fits.HDUList([fits.PrimaryHDU(np.zeros((40, 40), np.float32)), table]).writeto(path)
    with pytest.raises(FitsFormatError, match=r"t.fits\[CAT\]: HDU is a BinTableHDU"):
        read_image(path, hdu="CAT")


def test_one_dimensional_data(tmp_path):
    path = _write(tmp_path / "spec.fits", np.arange(500, dtype=np.float32))
    with pytest.raises(ImageShapeError, match=r"spec.fits\[PRIMARY\]: image data is 1-D"):
        read_image(path)


def test_four_dimensional_data(tmp_path):
    path = _write(tmp_path / "hyper.fits", np.zeros((2, 3, 40, 40), np.float32))
    with pytest.raises(ImageShapeError, match=r"hyper.fits.*4-D with shape \(2, 3, 40, 40\)"):
        read_image(path)


def test_bands_of_different_shapes(tmp_path):
    a = _write(tmp_path / "a.fits", np.zeros((40, 40), np.float32))
    b = _write(tmp_path / "b.fits", np.zeros((40, 48), np.float32))
    with pytest.raises(ImageShapeError, match=r"bands have different shapes.*a.fits.*b.fits"):
        read_image([a, b])


def test_all_pixels_masked(tmp_path):
    path = _write(tmp_path / "nan.fits", np.full((40, 40), np.nan, np.float32))
    with pytest.raises(MaskedImageError, match=r"nan.fits.*all 1600 pixels are masked"):
        read_image(path)


def test_image_too_small(tmp_path):
    path = _write(tmp_path / "tiny.fits", np.zeros((10, 40), np.float32))
    with pytest.raises(ImageShapeError, match=r"tiny.fits.*10x40 pixels.*at least 32x32"):
        read_image(path)


def test_mask_of_wrong_shape(tmp_path, pixels):
    image = _write(tmp_path / "img.fits", pixels)
    mask = _write(tmp_path / "m.fits", np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageShapeError, match=r"m.fits: mask map has shape \(10, 10\)"):
        read_image(image, mask=mask)


def test_wrong_number_of_band_names(tmp_path, pixels):
    with pytest.raises(InvalidParameterError, match="2 names"):
        read_image(_write(tmp_path / "img.fits", pixels), bands=["g", "r"])


def test_errors_share_one_base_and_value_error():
    for error in (FitsFormatError, ImageShapeError, MaskedImageError, InvalidParameterError):
        assert issubclass(error, SkysiftError)
        assert issubclass(error, ValueError)
    assert issubclass(FitsFileNotFoundError, FileNotFoundError)


def test_atomic_write_leaves_nothing_on_failure_and_normal_permissions(tmp_path):
    import os

    from skysift.io import atomic_write

    target = tmp_path / "out.txt"

    def crash_while_writing():
        with atomic_write(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")

    with pytest.raises(RuntimeError, match="crash"):
        crash_while_writing()
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_write(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(FileExistsError), atomic_write(target, overwrite=False):
        pass
