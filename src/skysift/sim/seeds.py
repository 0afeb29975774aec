"""Seed ranges: which simulated fields may be trained on, validated on, or tested on.

Every field is fixed by its seed, so keeping the ranges apart keeps test sets honest: a model
is never trained or tuned on a field whose seed is in the test range.

=============  ===========================  ==============================================
role           seeds                        used for
=============  ===========================  ==============================================
train          0 ... 899,999                training data
validation     900,000 ... 999,999          early stopping, threshold and parameter sweeps
test           1,000,000 ... 1,999,999      held-out metrics in model cards and benchmarks
(free)         2,000,000 and above          examples, demos, docs
=============  ===========================  ==============================================

Each model's datasets start at its own offset into a range (:func:`dataset_seeds`), so the
models' fields stay apart. The validation range is a tenth as long as the others, so offsets
into it are a tenth as large: a dataset keeps the same relative place in every range and
never spills into the next one.
"""

from __future__ import annotations

from skysift.errors import InvalidParameterError

__all__ = ["SEED_RANGES", "check_seed_role", "dataset_seeds", "seed_role", "seed_span"]

SEED_RANGES = {
    "train": range(900_000),
    "validation": range(900_000, 1_000_000),
    "test": range(1_000_000, 2_000_000),
}
#: Offsets into a role's range are divided by this (the validation range is 10x shorter).
_OFFSET_DIVISOR = {"train": 1, "validation": 10, "test": 1}


def dataset_seeds(role: str, n: int, *, offset: int = 0) -> range:
    """Seeds of an ``n``-field dataset that starts ``offset`` into ``role``'s range.

    Parameters
    ----------
    role : str
        ``"train"``, ``"validation"`` or ``"test"``.
    n : int
        Number of fields.
    offset : int
        Place of the dataset in the training and test ranges; in the (10x shorter)
        validation range the dataset starts at ``offset // 10``.

    Returns
    -------
    range

    Raises
    ------
    InvalidParameterError
        If ``role`` is unknown, or the dataset does not fit in the role's range.
    """
    if role not in SEED_RANGES:
        raise InvalidParameterError(f"role must be one of {sorted(SEED_RANGES)}; got {role!r}")
    if n < 0 or offset < 0:
        raise InvalidParameterError(f"n and offset must be >= 0; got n={n}, offset={offset}")
    seeds = SEED_RANGES[role]
    first = seeds.start + offset // _OFFSET_DIVISOR[role]
    if first + n > seeds.stop:
        raise InvalidParameterError(
            f"{n} {role} fields from offset {offset} reach seed {first + n - 1}, past the "
            f"{role} range {seeds}"
        )
    return range(first, first + n)


def seed_span(configs) -> dict[str, int]:
    """``{"first", "last", "n"}`` of the seeds of ``configs`` (anything with a ``seed``), as
    model cards record their datasets."""
    seeds = [int(c.seed) for c in configs]
    if not seeds:
        return {"first": -1, "last": -1, "n": 0}
    return {"first": min(seeds), "last": max(seeds), "n": len(seeds)}


def seed_role(seed: int) -> str:
    """``"train"``, ``"validation"``, ``"test"`` or ``"free"`` for a field seed."""
    for role, seeds in SEED_RANGES.items():
        if seed in seeds:
            return role
    if seed < 0:
        raise InvalidParameterError(f"seed must be >= 0; got {seed}")
    return "free"


def check_seed_role(seeds, role: str) -> None:
    """Raise if any of ``seeds`` is outside the range reserved for ``role``."""
    wrong = [s for s in seeds if seed_role(s) != role]
    if wrong:
        raise InvalidParameterError(
            f"{len(wrong)} seed(s) are not {role} seeds (e.g. {wrong[0]}, a "
            f"{seed_role(wrong[0])} seed); {role} seeds are {SEED_RANGES[role]}"
        )
