"""One-to-one matching of detections to truth.

Pairs closer than a radius are candidates; the assignment maximizes the number of matched
pairs and, among those, minimizes the summed distance (the Hungarian algorithm,
:func:`scipy.optimize.linear_sum_assignment`, solved separately on each connected group of
candidates so that a field of 100,000 sources is matched in a second).

Truth below a S/N cut is *not required*: a detection matched to it is neither a true nor a false
positive (it is "neutral"), and missing it is not a false negative. This is how faint sources a
detector may or may not find are kept out of both precision and recall.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from skysift.errors import InvalidParameterError

__all__ = ["MatchResult", "match_catalogs", "match_to_truth"]


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching detections to truth. All index arrays index the inputs.

    Attributes
    ----------
    detection_index, truth_index : numpy.ndarray
        Matched pairs (every pair, including neutral ones), sorted by detection index.
    distance : numpy.ndarray
        Separation of each pair, pixels.
    tp_detections : numpy.ndarray
        Detections matched to required truth.
    fp_detections : numpy.ndarray
        Detections matched to nothing.
    neutral_detections : numpy.ndarray
        Detections matched to truth that was not required.
    tp_truth : numpy.ndarray
        Required truth that was found (same order as ``tp_detections``).
    fn_truth : numpy.ndarray
        Required truth that was not found.
    required : numpy.ndarray
        Boolean per truth source: counted in recall.
    dx, dy : numpy.ndarray
        ``detection - truth`` offsets of the true-positive pairs, pixels.
    n_detections, n_truth : int
    radius : float
    """

    detection_index: np.ndarray
    truth_index: np.ndarray
    distance: np.ndarray
    tp_detections: np.ndarray
    fp_detections: np.ndarray
    neutral_detections: np.ndarray
    tp_truth: np.ndarray
    fn_truth: np.ndarray
    required: np.ndarray
    dx: np.ndarray
    dy: np.ndarray
    n_detections: int
    n_truth: int
    radius: float

    @property
    def tp(self) -> int:
        return int(self.tp_detections.size)

    @property
    def fp(self) -> int:
        return int(self.fp_detections.size)

    @property
    def fn(self) -> int:
        return int(self.fn_truth.size)


def match_catalogs(
    detected_x,
    detected_y,
    truth_x,
    truth_y,
    *,
    radius: float = 1.5,
    required=None,
) -> MatchResult:
    """Match detections to truth one-to-one within ``radius`` pixels.

    Parameters
    ----------
    detected_x, detected_y : array_like
        Detection positions (0-based pixels).
    truth_x, truth_y : array_like
        Truth positions.
    radius : float
        Largest separation of a match, pixels (ASID-L uses 1.5).
    required : array_like of bool, optional
        Per truth source, whether it counts (e.g. ``truth["snr"] >= 5``); all by default.

    Returns
    -------
    MatchResult

    Examples
    --------
    >>> m = match_catalogs([10.0, 10.4], [5.0, 5.0], [10.2], [5.0], radius=1.5)
    >>> m.tp, m.fp, m.fn
    (1, 1, 0)
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    dx_in, dy_in = _as_positions(detected_x, detected_y, "detected")
    tx_in, ty_in = _as_positions(truth_x, truth_y, "truth")
    if not (np.isfinite(radius) and radius > 0):
        raise InvalidParameterError(f"radius must be a positive number of pixels; got {radius}")
    n_det, n_truth = dx_in.size, tx_in.size
    required = (
        np.ones(n_truth, dtype=bool) if required is None else np.asarray(required, dtype=bool)
    )
    if required.shape != (n_truth,):
        raise InvalidParameterError(
            f"required must have one value per truth source ({n_truth}); got {required.shape}"
        )
    pairs_det = np.zeros(0, dtype=np.intp)
    pairs_truth = np.zeros(0, dtype=np.intp)
    if n_det and n_truth:
        det_tree = cKDTree(np.column_stack([dx_in, dy_in]))
        truth_tree = cKDTree(np.column_stack([tx_in, ty_in]))
        candidates = det_tree.sparse_distance_matrix(truth_tree, radius, output_type="ndarray")
        if candidates.size:
            pairs_det, pairs_truth = _assign(
                candidates["i"],
                candidates["j"],
                candidates["v"],
                n_det,
                n_truth,
                linear_sum_assignment,
                coo_matrix,
                connected_components,
            )
    order = np.argsort(pairs_det, kind="stable")
    pairs_det, pairs_truth = pairs_det[order], pairs_truth[order]
    distance = np.hypot(
        dx_in[pairs_det] - tx_in[pairs_truth], dy_in[pairs_det] - ty_in[pairs_truth]
    )
    counted = required[pairs_truth]
    matched_det = np.zeros(n_det, dtype=bool)
    matched_det[pairs_det] = True
    matched_truth = np.zeros(n_truth, dtype=bool)
    matched_truth[pairs_truth] = True
    tp_det, tp_truth = pairs_det[counted], pairs_truth[counted]
    return MatchResult(
        detection_index=pairs_det,
        truth_index=pairs_truth,
        distance=distance,
        tp_detections=tp_det,
        fp_detections=np.flatnonzero(~matched_det),
        neutral_detections=pairs_det[~counted],
        tp_truth=tp_truth,
        fn_truth=np.flatnonzero(required & ~matched_truth),
        required=required,
        dx=dx_in[tp_det] - tx_in[tp_truth],
        dy=dy_in[tp_det] - ty_in[tp_truth],
        n_detections=n_det,
        n_truth=n_truth,
        radius=float(radius),
    )


def _as_positions(x, y, name: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise InvalidParameterError(f"{name} x and y differ in length: {x.size} and {y.size}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidParameterError(f"{name} positions contain NaN or inf")
    return x, y


def _assign(rows, cols, dist, n_det, n_truth, linear_sum_assignment, coo_matrix, components):
    """Max-cardinality, min-distance assignment on each connected group of candidate pairs."""
    graph = coo_matrix(
        (np.ones(rows.size), (rows, cols + n_det)), shape=(n_det + n_truth, n_det + n_truth)
    )
    _, labels = components(graph, directed=False)
    group = labels[rows]
    order = np.argsort(group, kind="stable")
    rows, cols, dist, group = rows[order], cols[order], dist[order], group[order]
    bounds = np.flatnonzero(np.diff(group)) + 1
    out_det, out_truth = [], []
    # a cost larger than any sum of real distances makes the solver maximize the match count
    for r, c, d in zip(
        np.split(rows, bounds), np.split(cols, bounds), np.split(dist, bounds), strict=True
    ):
        if r.size == 1:
            out_det.append(r)
            out_truth.append(c)
            continue
        det_ids, det_pos = np.unique(r, return_inverse=True)
        truth_ids, truth_pos = np.unique(c, return_inverse=True)
        forbidden = 1.0 + 2.0 * float(d.sum()) + 1.0
        cost = np.full((det_ids.size, truth_ids.size), forbidden)
        cost[det_pos, truth_pos] = d
        chosen_r, chosen_c = linear_sum_assignment(cost)
        real = cost[chosen_r, chosen_c] < forbidden
        out_det.append(det_ids[chosen_r[real]])
        out_truth.append(truth_ids[chosen_c[real]])
    return np.concatenate(out_det), np.concatenate(out_truth)


def match_to_truth(
    detected_x,
    detected_y,
    truth_x,
    truth_y,
    truth_snr,
    *,
    required_snr: float = 5.0,
    neutral_snr: float = 2.0,
    radius: float = 1.5,
) -> tuple[MatchResult, np.ndarray]:
    """Match with skysift's standard detection scoring (the ASID-L rules).

    Truth with ``snr >= required_snr`` is required; truth with ``neutral_snr <= snr <
    required_snr`` is neutral (matching it is neither TP nor FP); truth fainter than
    ``neutral_snr`` is left out, so a detection of it counts as a false positive.

    Returns
    -------
    match : MatchResult
        Truth indices refer to the kept truth rows.
    kept : numpy.ndarray
        Indices of the kept truth rows in the input.
    """
    snr = np.asarray(truth_snr, dtype=float)
    kept = np.flatnonzero(snr >= neutral_snr)
    match = match_catalogs(
        detected_x,
        detected_y,
        np.asarray(truth_x)[kept],
        np.asarray(truth_y)[kept],
        radius=radius,
        required=snr[kept] >= required_snr,
    )
    return match, kept
