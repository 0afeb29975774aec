"""The feature-based star/galaxy baseline: gradient boosting on catalog measurements.

This is the approach ASID-C argues against: measure shape parameters of each source from the
image (here with SEP, the library form of SExtractor) and classify on them. The features are
measured at the same positions the network uses:

==================  ============================================================================
feature             meaning
==================  ============================================================================
r25, r50, r80       radii enclosing 25/50/80 % of the flux (``sep.flux_radius``), in units of
                    the *local* PSF FWHM (the simulator's PSF model at the source: the baseline
                    gets the PSF for free, which a real catalog would have to model)
r80_r25             concentration r80 / r25
aperture_ratio      flux within 0.5 FWHM over flux within 2 FWHM (SDSS-like psf-vs-model)
peak_ratio          brightest pixel near the source over the 2-FWHM flux
ellipticity         1 - b/a of the matching ``sep.extract`` object (NaN when SEP missed it)
size_ratio          sqrt(a b) of that object over the PSF sigma
log_snr             log10 of the aperture S/N within 1 FWHM
psf_fwhm            local PSF FWHM, pixels
==================  ============================================================================

:class:`FeatureClassifier` is scikit-learn's gradient boosting (``HistGradientBoostingClassifier``)
(handles the NaNs natively) with early stopping on an internal validation fraction.
"""

from __future__ import annotations

import numpy as np

__all__ = ["FEATURE_NAMES", "FeatureClassifier", "catalog_features"]

FEATURE_NAMES = (
    "r25",
    "r50",
    "r80",
    "r80_r25",
    "aperture_ratio",
    "peak_ratio",
    "ellipticity",
    "size_ratio",
    "log_snr",
    "psf_fwhm",
)


def catalog_features(image, x, y, *, psf_fwhm) -> np.ndarray:
    """``(n, len(FEATURE_NAMES))`` float64 features of the sources at ``x, y``.

    Parameters
    ----------
    image : skysift.Image
        Single-band image (band 0 is measured).
    x, y : array_like
        Source positions, 0-based pixels.
    psf_fwhm : float or array_like
        PSF FWHM in pixels at each source.
    """
    import sep
    from scipy.spatial import cKDTree

    x = np.asarray(x, float)
    y = np.asarray(y, float)
    n = x.size
    out = np.full((n, len(FEATURE_NAMES)), np.nan)
    if n == 0:
        return out
    fwhm = np.broadcast_to(np.asarray(psf_fwhm, float), x.shape).copy()
    data = np.array(image.data[0], dtype=np.float32, order="C")
    mask = np.array(image.mask, dtype=bool, order="C")  # SEP needs a writable buffer
    data[mask] = 0.0
    background = sep.Background(data, mask=mask, bw=64, bh=64)
    background.subfrom(data)
    rms = background.globalrms
    radii, _ = sep.flux_radius(
        data, x, y, 3.0 * fwhm, [0.25, 0.5, 0.8], mask=mask, normflux=None, subpix=5
    )
    small, _, _ = sep.sum_circle(data, x, y, 0.5 * fwhm, mask=mask, subpix=5)
    big, _, _ = sep.sum_circle(data, x, y, 2.0 * fwhm, mask=mask, subpix=5)
    ap, ap_err, _ = sep.sum_circle(data, x, y, fwhm, err=rms, mask=mask, subpix=5)
    height, width = data.shape
    peak = np.full(n, -np.inf)
    cols, rows = np.rint(x).astype(int), np.rint(y).astype(int)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            r = np.clip(rows + dy, 0, height - 1)
            c = np.clip(cols + dx, 0, width - 1)
            peak = np.maximum(peak, data[r, c])
    objects = sep.extract(data, 1.5, err=rms, mask=mask, minarea=5)
    ellipticity = np.full(n, np.nan)
    size_ratio = np.full(n, np.nan)
    if len(objects):
        distance, index = cKDTree(np.c_[objects["x"], objects["y"]]).query(np.c_[x, y])
        found = distance < 2.0
        a, b = objects["a"][index[found]], objects["b"][index[found]]
        ellipticity[found] = 1.0 - b / np.maximum(a, 1e-6)
        size_ratio[found] = np.sqrt(a * b) / (fwhm[found] / 2.3548)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, 0:3] = radii / fwhm[:, None]
        out[:, 3] = radii[:, 2] / radii[:, 0]
        out[:, 4] = small / big
        out[:, 5] = peak / big
        out[:, 6] = ellipticity
        out[:, 7] = size_ratio
        out[:, 8] = np.log10(np.clip(ap / ap_err, 1e-3, None))
        out[:, 9] = fwhm
    out[~np.isfinite(out)] = np.nan
    return out


class FeatureClassifier:
    """Gradient boosting on :func:`catalog_features`; ``predict_proba -> P(star)``."""

    def __init__(self, *, seed: int = 0, max_iter: int = 500) -> None:
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.model = HistGradientBoostingClassifier(
            max_iter=max_iter,
            learning_rate=0.1,
            early_stopping=True,
            validation_fraction=0.1,
            n_iter_no_change=20,
            random_state=seed,
        )

    def fit(self, features: np.ndarray, labels: np.ndarray) -> FeatureClassifier:
        self.model.fit(features, labels)
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(features)[:, 1]
