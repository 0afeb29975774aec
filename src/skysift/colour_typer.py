"""The segmenter chain's last star/galaxy call, made with each instance's colours.

The second looks see each instance's bands normalized by each band's own robust scale, which
on a field with a sky gradient or amplifier offsets is set by them, not by the noise: the
scale ratio between bands changes from field to field by a factor of two or more, so the
looks cannot read a source's colour (docs/models.md, session 43). Stars and galaxies differ
in colour as much as a faint source's colour can be measured, so the chain loses a signal
every survey's star/galaxy separation uses.

The colour typer puts it back. For each instance it measures the light in a circular aperture
(:data:`APERTURE_FWHM` PSF FWHM in radius) at the centroid of its mask in each band of the
sky-subtracted image (SEP's background, SExtractor's algorithm) in the image's own units, and
a small network decides star, galaxy or false from those fluxes and colours together with
what the chain already knows: the looks' and the detector's probabilities, P(shred), the
mask's area and the PSF FWHM (:data:`FEATURES`). A typer whose card says ``mask_light``
also reads how the light lies in the mask (:data:`MASK_LIGHT`, :func:`mask_light`): a mask
drawn wider than its source, or over two of them, counts as no match in Burke et al.'s
figure, and these features show it (they did not move the figure on validation fields, so
the shipped typer does not read them; docs/models.md, session 44). One whose card says
``aperture_profile`` also reads the light in apertures of other radii
(:func:`aperture_profile`): the source's extent from its pixels, whatever its mask. Its
probabilities replace the instance's group and ranking score. Colours compare bands in the
image's units: they are the colours of the training fields' zero points (the card's
``zero_points``) unless the image's are given (``SegmentConfig.zero_points``), in which case
each band is scaled to the card's first.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "APERTURE_FWHM",
    "CLASSES",
    "FEATURES",
    "MASK_LIGHT",
    "PROFILE_FWHM",
    "STARGALAXY",
    "ColourTyper",
    "aperture_fluxes",
    "aperture_noise",
    "aperture_profile",
    "instance_features",
    "instance_rows",
    "mask_centroids",
    "mask_light",
    "prediction_features",
    "retype_by_colour",
    "sky_subtracted",
    "stargalaxy_logits",
]

#: Aperture radius in PSF FWHM: near the best S/N of a point source's aperture flux.
APERTURE_FWHM = 0.8
#: The typer's classes, in the order of its outputs.
CLASSES = ("galaxy", "star", "false")
#: Colours are clipped to this many magnitudes either way (a band with no flux gives a limit).
COLOUR_LIMIT = 4.0


#: How the light lies in an instance's mask (:func:`mask_light`), on the bands' summed S/N.
MASK_LIGHT = (
    "asinh_mask_snr",
    "mask_share_above_1sigma",
    "mask_share_above_3sigma",
    "light_offset_fwhm",
)
#: The light-weighted centre's offset from the mask's is clipped to this many PSF FWHM.
OFFSET_LIMIT = 5.0
#: Radii, in PSF FWHM, of the apertures that tell a source's extent from its pixels alone
#: (:func:`aperture_profile`): with the :data:`APERTURE_FWHM` one, the light inside a third
#: of a star's core and inside all of it.
PROFILE_FWHM = (0.4, 1.6)


#: The star/galaxy classifier's call (:func:`stargalaxy_logits`), read from a cutout of the
#: pixels alone, with no mask.
STARGALAXY = ("logit_p_star_stargalaxy",)
#: Its logit is clipped to this either way.
LOGIT_LIMIT = 10.0


def feature_names(
    bands: int, *, mask_light: bool = False, profile: bool = False, stargalaxy: bool = False
) -> tuple[str, ...]:
    """Names of the typer's inputs for an image of ``bands`` bands (reference band: the
    middle one, where the PSF FWHM is measured), then :data:`MASK_LIGHT` with
    ``mask_light``, then the :func:`aperture_profile` with ``profile``, then
    :data:`STARGALAXY` with ``stargalaxy``."""
    base = (
        "look_p_star",
        "look_p_false",
        "look_decided",
        "detector_p_star",
        "detector_p_galaxy",
        "p_shred",
        "log_area",
        "log_psf_fwhm",
    )
    snr = tuple(f"asinh_snr_band{b}" for b in range(bands))
    colours = tuple(f"colour_band{b}" for b in range(bands) if b != bands // 2)
    extent = tuple(f"asinh_snr_r{r:g}fwhm_band{b}" for r in PROFILE_FWHM for b in range(bands))
    return (
        base
        + snr
        + colours
        + (MASK_LIGHT if mask_light else ())
        + (extent if profile else ())
        + (STARGALAXY if stargalaxy else ())
    )


#: The inputs of a three-band typer (g, r, z: colours g - r and z - r); one that reads the
#: mask's light takes :data:`MASK_LIGHT` after them.
FEATURES = feature_names(3)


def sky_subtracted(
    bands: np.ndarray, bad: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each band less SEP's background map, and the background's RMS per band.

    Parameters
    ----------
    bands : numpy.ndarray
        ``(bands, height, width)`` image in its own units (not normalized).
    bad : numpy.ndarray, optional
        ``(height, width)`` pixels to leave out of the background.

    Returns
    -------
    image : numpy.ndarray
        ``(bands, height, width)`` float32, sky-subtracted; ``bad`` pixels are 0.
    rms : numpy.ndarray
        ``(bands,)`` each band's noise per pixel: 1.4826 x the median absolute deviation of
        its sky-subtracted pixels (robust to the sources; SEP's own RMS would carry the sky's
        slope across each of its meshes).
    """
    import sep

    from skysift.normalization import robust_level_scale

    out = np.empty(bands.shape, dtype=np.float32)
    rms = np.empty(bands.shape[0])
    mask = None if bad is None else np.array(bad, dtype=bool)  # SEP writes to its input
    for k, band in enumerate(np.asarray(bands, dtype=np.float32)):
        band = np.ascontiguousarray(np.nan_to_num(band, nan=0.0, posinf=0.0, neginf=0.0))
        out[k] = band - sep.Background(band, mask=mask).back()
        rms[k] = robust_level_scale(out[k], mask)[1]
    if mask is not None:
        out[:, mask] = 0.0
    return out, rms


def mask_centroids(pixels: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` the mean column and row of each instance's ``(rows, cols)`` pixels (NaN for
    an empty one)."""
    x = np.array([np.mean(cols) if len(cols) else np.nan for rows, cols in pixels], dtype=float)
    y = np.array([np.mean(rows) if len(rows) else np.nan for rows, cols in pixels], dtype=float)
    return x, y


def aperture_fluxes(
    image: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    psf_fwhm: float,
    radius_fwhm: float = APERTURE_FWHM,
) -> np.ndarray:
    """``(bands, n)`` sums of a sky-subtracted ``image`` in circles of ``radius_fwhm`` x
    ``psf_fwhm`` pixels about ``(x, y)`` (0 where a position is NaN)."""
    import sep

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    out = np.zeros((image.shape[0], x.size))
    good = np.isfinite(x) & np.isfinite(y)
    if not good.any():
        return out
    radius = radius_fwhm * float(psf_fwhm)
    for k, band in enumerate(image):
        flux, _, _ = sep.sum_circle(
            np.ascontiguousarray(band, dtype=np.float32), x[good], y[good], radius
        )
        out[k, good] = flux
    return out


def aperture_noise(rms: np.ndarray, *, radius_fwhm: float, psf_fwhm: float) -> np.ndarray:
    """``(bands, 1)`` the sky noise of a circle of ``radius_fwhm`` x ``psf_fwhm`` pixels, from
    each band's noise per pixel ``rms`` (the square root of the circle's area)."""
    return np.asarray(rms, dtype=float)[:, None] * math.sqrt(math.pi) * radius_fwhm * psf_fwhm


def aperture_profile(
    image: np.ndarray, rms: np.ndarray, x: np.ndarray, y: np.ndarray, *, psf_fwhm: float
) -> np.ndarray:
    """``(n, len(PROFILE_FWHM) x bands)`` the S/N of the light in circles of each
    :data:`PROFILE_FWHM` radius about ``(x, y)``, per band, as ``asinh(flux / sigma)``.

    With the typer's :data:`APERTURE_FWHM` fluxes these give the source's light profile
    measured on its pixels alone: a star's shares inside the three radii are the PSF's
    whatever its mask, a galaxy's fall slower. The second looks read extent from the mask's
    size as much as from the pixels (docs/models.md, session 46), and a mask drawn a little
    wide around a faint star makes them call it a galaxy. S/N ratios: no unit scale changes
    them. Row order: every band at the first radius, then at the next.
    """
    columns = []
    for radius in PROFILE_FWHM:
        fluxes = aperture_fluxes(image, x, y, psf_fwhm=psf_fwhm, radius_fwhm=radius)
        sigma = aperture_noise(rms, radius_fwhm=radius, psf_fwhm=psf_fwhm)
        columns.extend(np.arcsinh(fluxes / sigma))
    return np.column_stack(columns).astype(np.float32)


def mask_light(
    image: np.ndarray,
    rms: np.ndarray,
    pixels: Sequence,
    *,
    psf_fwhm: float,
    offset: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """``(n, len(MASK_LIGHT))`` how the light lies in each instance's mask.

    The bands' S/N per pixel are summed, ``sum_b (image_b / rms_b) / sqrt(bands)`` (one
    pixel's S/N whatever the source's colour, in any units), and for each mask: the asinh of
    the S/N of the mask's summed light; the share of its pixels above 1 and above 3 (a mask
    drawn wide holds many pixels of sky); and how far the centre of its positive light lies
    from the mask's own centre, in PSF FWHM (a mask over two sources, or one that runs out
    on one side, is lopsided), clipped at :data:`OFFSET_LIMIT`. An empty mask gives zeros.

    Parameters
    ----------
    image, rms
        Sky-subtracted ``(bands, H, W)`` image and each band's noise per pixel
        (:func:`sky_subtracted`).
    pixels : sequence of (rows, cols)
        Each instance's mask, ``offset`` (``(column, row)``) from ``image``'s origin.
    psf_fwhm : float
        PSF FWHM of the reference band, pixels.
    """
    weights = 1.0 / (np.asarray(rms, dtype=float) * math.sqrt(len(rms)))
    out = np.zeros((len(pixels), len(MASK_LIGHT)), dtype=np.float32)
    for k, (rows, cols) in enumerate(pixels):
        if not len(rows):
            continue
        rows, cols = np.asarray(rows) + offset[1], np.asarray(cols) + offset[0]
        values = weights @ np.asarray(image[:, rows, cols], dtype=float)
        light = np.maximum(values, 0.0)
        total = light.sum()
        shift = 0.0
        if total > 0:
            dx = np.dot(light, cols) / total - cols.mean()
            dy = np.dot(light, rows) / total - rows.mean()
            shift = min(math.hypot(dx, dy) / psf_fwhm, OFFSET_LIMIT)
        out[k] = (
            math.asinh(values.sum() / math.sqrt(values.size)),
            np.mean(values > 1.0),
            np.mean(values > 3.0),
            shift,
        )
    return out


def instance_features(
    prediction: dict[str, Any],
    *,
    areas: np.ndarray,
    fluxes: np.ndarray,
    rms: np.ndarray,
    psf_fwhm: float,
) -> np.ndarray:
    """``(n, len(feature_names(bands)))`` float32 inputs of the typer, per instance.

    Parameters
    ----------
    prediction : dict
        The chain's prediction after its looks: ``p_star`` and ``p_galaxy`` (the detector's),
        ``p_star_second_look`` and ``p_false_second_look`` (NaN where no look decided; absent
        without a look), ``p_shred`` (optional; NaN for stars).
    areas : numpy.ndarray
        ``(n,)`` pixels in each instance's mask.
    fluxes : numpy.ndarray
        ``(bands, n)`` aperture fluxes (:func:`aperture_fluxes`), in the training zero points.
    rms : numpy.ndarray
        ``(bands,)`` background noise per pixel in the same units.
    psf_fwhm : float
        PSF FWHM of the reference band, pixels.
    """
    n = len(np.asarray(prediction["p_star"]))
    detector_star = np.asarray(prediction["p_star"], dtype=float)
    detector_galaxy = np.asarray(prediction["p_galaxy"], dtype=float)
    look_star = np.asarray(prediction.get("p_star_second_look", np.full(n, np.nan)), dtype=float)
    look_false = np.asarray(prediction.get("p_false_second_look", np.full(n, np.nan)), dtype=float)
    decided = np.isfinite(look_star)
    fallback = detector_star / np.maximum(detector_star + detector_galaxy, 1e-6)
    shred = np.asarray(prediction.get("p_shred", np.full(n, np.nan)), dtype=float)
    fluxes = np.asarray(fluxes, dtype=float).reshape(len(rms), n)
    sigma = aperture_noise(rms, radius_fwhm=APERTURE_FWHM, psf_fwhm=psf_fwhm)
    reference = len(rms) // 2
    floor = np.maximum(fluxes, sigma)
    colours = [
        np.clip(-2.5 * np.log10(floor[b] / floor[reference]), -COLOUR_LIMIT, COLOUR_LIMIT)
        for b in range(len(rms))
        if b != reference
    ]
    columns = [
        np.where(decided, look_star, fallback),
        np.where(decided, np.nan_to_num(look_false), 0.0),
        decided.astype(float),
        detector_star,
        detector_galaxy,
        np.nan_to_num(shred),
        np.log(np.maximum(np.asarray(areas, dtype=float), 1.0)),
        np.full(n, math.log(psf_fwhm)),
        *np.arcsinh(fluxes / sigma),
        *colours,
    ]
    return (
        np.column_stack(columns).astype(np.float32)
        if n
        else np.zeros((0, len(columns)), np.float32)
    )


class ColourTyper:
    """A shipped (or given) colour typer: instance features in, class probabilities out.

    Parameters
    ----------
    name : str
        Shipped model name (``skysift models``), or the path of a card written elsewhere.
    module, card : optional
        A trained :class:`skysift.models.colour_typer.ColourTyperNet` and its card, instead
        of loading one.
    """

    def __init__(self, name: str = "colour_typer", *, module=None, card=None) -> None:
        from skysift.models.registry import shipped_or_given

        self.module, self.card = shipped_or_given(name, module, card, what="colour typer")
        #: bands of the images it decides (its features are those of this many bands)
        self.bands = int(self.card["inputs"]["bands"])
        #: AB magnitude of one image unit per band in its training fields
        self.zero_points = tuple(float(z) for z in self.card["inputs"]["zero_points"])
        #: whether it reads how the light lies in each mask (:data:`MASK_LIGHT`)
        self.mask_light = bool(self.card["inputs"].get("mask_light", False))
        #: whether it reads the light profile in apertures (:func:`aperture_profile`)
        self.profile = bool(self.card["inputs"].get("aperture_profile", False))
        #: the star/galaxy classifier whose call it reads (:func:`stargalaxy_logits`), if any
        self.stargalaxy = None
        if self.card["inputs"].get("stargalaxy"):
            from skysift.stargalaxy import StarGalaxyClassifier

            self.stargalaxy = StarGalaxyClassifier(
                self.card["inputs"]["stargalaxy"], calibrated=False
            )

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(n, 3)`` probabilities of :data:`CLASSES` for :func:`instance_features` rows."""
        import torch

        from skysift.errors import InvalidParameterError

        features = np.asarray(features, dtype=np.float32)
        width = len(
            feature_names(
                self.bands,
                mask_light=self.mask_light,
                profile=self.profile,
                stargalaxy=self.stargalaxy is not None,
            )
        )
        if features.ndim != 2 or features.shape[1] != width:
            raise InvalidParameterError(
                f"the colour typer {self.card['name']!r} takes (n, {width}) features; got "
                f"{features.shape}"
            )
        if not len(features):
            return np.zeros((0, len(CLASSES)))
        with torch.no_grad():
            logits = self.module(torch.from_numpy(features))
        return torch.softmax(logits, dim=1).numpy().astype(float)

    def other_bands(self, names: Sequence[str]) -> tuple[str, ...] | None:
        """The card's band names when an image's named bands (``names``) are not those the
        typer learned its colours in, else None. Generic names (``band0``, ``band1``, ...)
        and a card without band names are taken to match: nothing says otherwise."""
        trained = tuple(self.card["inputs"].get("band_names", ()))
        named = tuple(names)
        generic = named == tuple(f"band{i}" for i in range(len(named)))
        return trained if trained and not generic and named != trained else None

    def unit_scales(self, zero_points: Sequence[float] | None) -> np.ndarray:
        """``(bands,)`` factors that put an image of ``zero_points`` (AB magnitude of one
        image unit per band; None: the card's own) in the training fields' units."""
        from skysift.errors import InvalidParameterError

        if zero_points is None:
            return np.ones(self.bands)
        if len(zero_points) != self.bands:
            raise InvalidParameterError(
                f"the colour typer {self.card['name']!r} needs {self.bands} zero points (one "
                f"per band); got {len(zero_points)}"
            )
        given = np.asarray(zero_points, dtype=float)
        return 10 ** (0.4 * (np.asarray(self.zero_points) - given))


def prediction_features(
    prediction: dict[str, Any],
    pixels: Sequence,
    *,
    image: np.ndarray,
    rms: np.ndarray,
    psf_fwhm: float,
    offset: tuple[int, int] = (0, 0),
    unit_scales: np.ndarray | None = None,
    with_mask_light: bool = False,
    with_profile: bool = False,
    stargalaxy=None,
) -> np.ndarray:
    """:func:`instance_features` of a prediction's instances: each one's aperture fluxes
    measured in ``image`` at the centroid of its ``pixels`` (shifted by ``offset``, the
    ``(column, row)`` of their origin in ``image``), all bands multiplied by
    ``unit_scales`` (:meth:`ColourTyper.unit_scales`) first; with ``with_mask_light``,
    :func:`mask_light` after them, and with ``with_profile`` the :func:`aperture_profile`
    at the same centroid last (S/N ratios: no unit scale changes them)."""
    scale = np.ones(image.shape[0]) if unit_scales is None else np.asarray(unit_scales, float)
    x, y = mask_centroids(pixels)
    fluxes = aperture_fluxes(image, x + offset[0], y + offset[1], psf_fwhm=psf_fwhm)
    features = instance_features(
        prediction,
        areas=np.array([len(rows) for rows, _ in pixels]),
        fluxes=fluxes * scale[:, None],
        rms=np.asarray(rms, dtype=float) * scale,
        psf_fwhm=psf_fwhm,
    )
    parts = [features]
    if with_mask_light:
        parts.append(mask_light(image, rms, pixels, psf_fwhm=psf_fwhm, offset=offset))
    if with_profile:
        parts.append(aperture_profile(image, rms, x + offset[0], y + offset[1], psf_fwhm=psf_fwhm))
    if stargalaxy is not None:
        parts.append(
            stargalaxy_logits(
                image, x + offset[0], y + offset[1], psf_fwhm=psf_fwhm, classifier=stargalaxy
            )[:, None]
        )
    return np.concatenate(parts, axis=1)


def stargalaxy_logits(
    image: np.ndarray, x: np.ndarray, y: np.ndarray, *, psf_fwhm: float, classifier
) -> np.ndarray:
    """The star/galaxy ``classifier``'s logit of P(star) (uncalibrated when it was loaded
    with ``calibrated=False``, as the typer loads it: the typer learns its own scale) for a
    cutout of the middle band at each ``x, y``, with the PSF FWHM as its seeing, clipped to
    :data:`LOGIT_LIMIT`.

    It reads the pixels alone, where the chain's looks also read the size of a mask that may
    hold more than the source (docs/models.md, session 48). Positions that are not finite
    give 0. The image's own frame is the classifier's detector."""

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    out = np.zeros(x.size, dtype=np.float32)  # as the typer's other features
    finite = np.isfinite(x) & np.isfinite(y)
    if not finite.any():
        return out
    band_image, plane = _stargalaxy_plane(image, classifier)
    raw, _ = classifier(band_image, x[finite], y[finite], seeing_fwhm=psf_fwhm, plane=plane)
    p = np.clip(np.asarray(raw, dtype=float), 1e-12, 1 - 1e-12)
    out[finite] = np.clip(np.log(p / (1 - p)), -LOGIT_LIMIT, LOGIT_LIMIT)
    return out


#: The last image's middle band as the star/galaxy classifier reads it: ``(weak reference
#: to the image array, band Image, classifier plane)``. The ``Segmenter`` types one image tile
#: by tile, always with the same array, and the band's background is computed once.
_LAST_PLANE: list = [None]


def _stargalaxy_plane(image: np.ndarray, classifier) -> tuple:
    import weakref

    from skysift.image import Image

    cached = _LAST_PLANE[0]
    if cached is not None and cached[0]() is image:
        return cached[1], cached[2]
    band = Image.from_array(np.asarray(image[image.shape[0] // 2], dtype=np.float32))
    plane = classifier.plane(band)
    _LAST_PLANE[0] = (weakref.ref(image), band, plane)
    return band, plane


def retype_by_colour(
    prediction: dict[str, Any],
    pixels: Sequence,
    typer: ColourTyper,
    *,
    image: np.ndarray,
    rms: np.ndarray,
    psf_fwhm: float,
    classes: Sequence[str],
    offset: tuple[int, int] = (0, 0),
    zero_points: Sequence[float] | None = None,
    only: np.ndarray | None = None,
) -> dict[str, Any]:
    """A prediction with each instance's group and score from the colour typer.

    Parameters
    ----------
    prediction : dict
        The chain's prediction after its looks, shreds and types (see
        :func:`instance_features`), with ``labels`` (1-based into ``classes``) and ``scores``.
    pixels : sequence of (rows, cols)
        Each instance's final mask, in the coordinates of ``prediction``.
    typer : ColourTyper
    image : numpy.ndarray
        ``(bands, H, W)`` sky-subtracted image in its own units (:func:`sky_subtracted`).
    rms : numpy.ndarray
        ``(bands,)`` its background noise per pixel.
    psf_fwhm : float
        PSF FWHM of the reference band, pixels.
    classes : sequence of str
        The detector's classes; must include ``star`` and ``other``.
    offset : (int, int)
        ``(column, row)`` of ``pixels``' origin in ``image`` (a tile's corner).
    zero_points : sequence of float, optional
        AB magnitude of one image unit per band; None takes the typer's training ones.
    only : numpy.ndarray of bool, optional
        Type these instances alone (the typer learned on the instances the label map keeps
        under the chain's scores: :func:`skysift.segment.painted_map`); the others keep
        their group and scores, with NaN probabilities. None types every instance.

    Returns
    -------
    dict
        A new prediction: an instance is a star when P(star) >= P(galaxy), else a galaxy (a
        galaxy keeps its type, a former star becomes ``other``: see
        :func:`skysift.morphology.type_new_galaxies`); ``detection_scores`` are the larger of
        the two, and so are ``scores`` except that a galaxy which stays one keeps its type's
        probability as a factor (``scores / detection_scores`` before); ``p_star_colour``
        and ``p_false_colour`` are the typer's. The input is not modified.
    """
    from skysift.errors import InvalidParameterError

    if image.shape[0] != typer.bands:
        raise InvalidParameterError(
            f"the colour typer {typer.card['name']!r} takes {typer.bands} bands; got "
            f"{image.shape[0]}"
        )
    labels = np.asarray(prediction["labels"])
    out = dict(prediction)
    typed = np.ones(labels.size, bool) if only is None else np.asarray(only, bool)
    if typed.shape != labels.shape:
        raise InvalidParameterError(
            f"only must hold one flag per instance ({labels.size}); got shape {typed.shape}"
        )
    out["p_star_colour"] = np.full(labels.size, np.nan)
    out["p_false_colour"] = np.full(labels.size, np.nan)
    if not typed.any():
        return out
    index = np.flatnonzero(typed)
    features = prediction_features(
        instance_rows(prediction, index),
        [pixels[k] for k in index],
        image=image,
        rms=rms,
        psf_fwhm=psf_fwhm,
        offset=offset,
        unit_scales=typer.unit_scales(zero_points),
        with_mask_light=typer.mask_light,
        with_profile=typer.profile,
        stargalaxy=typer.stargalaxy,
    )
    p = typer.probabilities(features)
    p_galaxy, p_star = p[:, CLASSES.index("galaxy")], p[:, CLASSES.index("star")]
    star, other = classes.index("star") + 1, classes.index("other") + 1
    is_star = p_star >= p_galaxy
    now = labels.copy()
    now[index] = np.where(is_star, star, np.where(labels[index] == star, other, labels[index]))
    out["labels"] = now
    before = np.asarray(prediction.get("detection_scores", prediction["scores"]), dtype=float)
    # a galaxy that stays one keeps its type's probability in its class score (the
    # morphology_score), which the chain's galaxy types put there as scores / detection_scores
    type_probability = np.where(
        (labels[index] != star) & ~is_star & (before[index] > 0),
        np.asarray(prediction["scores"], dtype=float)[index] / np.maximum(before[index], 1e-12),
        1.0,
    )
    detection_scores = np.array(before, dtype=np.asarray(prediction["scores"]).dtype)
    detection_scores[index] = np.maximum(p_star, p_galaxy)
    scores = np.array(prediction["scores"], copy=True)
    scores[index] = detection_scores[index] * np.clip(type_probability, 0.0, 1.0)
    out["scores"], out["detection_scores"] = scores, detection_scores
    out["p_star_colour"][index] = p_star
    out["p_false_colour"][index] = p[:, CLASSES.index("false")]
    return out


def instance_rows(prediction: dict[str, Any], index: np.ndarray) -> dict[str, Any]:
    """The rows ``index`` of every per-instance array of ``prediction`` (other entries as
    they are); the input is not modified."""
    n = len(np.asarray(prediction["labels"]))
    return {
        key: np.asarray(value)[index] if np.ndim(value) and len(np.asarray(value)) == n else value
        for key, value in prediction.items()
    }
