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
"""

from __future__ import annotations

from skysift.errors import InvalidParameterError

__all__ = ["SEED_RANGES", "check_seed_role", "seed_role"]

SEED_RANGES = {
    "train": range(900_000),
    "validation": range(900_000, 1_000_000),
    "test": range(1_000_000, 2_000_000),
}


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
