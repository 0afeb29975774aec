"""Test-time augmentation: the symmetries of the pixel grid, and how to map results back.

A network that has learnt the sky's symmetry (sources look the same flipped or rotated by
90 degrees) still makes noise-driven errors that differ from one view of an image to the
next; averaging its answers over several views removes part of them. Each view is the image
flipped left-right (optionally) and then turned by quarter turns, as
:func:`numpy.rot90` and :func:`torch.rot90` turn the last two axes. The functions here take
results from a view back to the image: arrays (probability maps, masks inside a box) and
boxes ``(x0, y0, x1, y1)`` in pixel-edge coordinates (x = column, y = row).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from skysift.errors import InvalidParameterError

__all__ = ["AUGMENTATIONS", "boxes_from_view", "check_augment", "from_view", "to_view"]

#: Test-time augmentations: ``(quarter turns, left-right flip first)`` of each network pass.
AUGMENTATIONS: dict[str | None, tuple[tuple[int, bool], ...]] = {
    None: ((0, False),),
    "flips": ((0, False), (0, True), (2, False), (2, True)),
    "d4": tuple((turns, flip) for turns in range(4) for flip in (False, True)),
}


def check_augment(augment: Any) -> None:
    """Raise :class:`~skysift.errors.InvalidParameterError` unless ``augment`` names one of
    :data:`AUGMENTATIONS`."""
    if not isinstance(augment, str | None) or augment not in AUGMENTATIONS:
        choices = ", ".join(repr(k) for k in AUGMENTATIONS)
        raise InvalidParameterError(f"augment must be one of {choices}; got {augment!r}")


def to_view(array, quarter_turns: int, flip: bool):
    """``array`` (numpy or torch, the image in its last two axes) as the view sees it."""
    if isinstance(array, np.ndarray):
        return np.rot90(array[..., ::-1] if flip else array, quarter_turns, axes=(-2, -1))
    import torch

    return torch.rot90(torch.flip(array, (-1,)) if flip else array, quarter_turns, (-2, -1))


def from_view(array, quarter_turns: int, flip: bool):
    """Undo :func:`to_view`: a view's ``array`` (or a mask inside a view's box) in the
    image's orientation."""
    if isinstance(array, np.ndarray):
        back = np.rot90(array, -quarter_turns, axes=(-2, -1))
        return back[..., ::-1] if flip else back
    import torch

    back = torch.rot90(array, -quarter_turns, (-2, -1))
    return torch.flip(back, (-1,)) if flip else back


def boxes_from_view(boxes, quarter_turns: int, flip: bool, *, shape: tuple[int, int]):
    """``(n, 4)`` boxes found in a view, in the coordinates of the image of ``shape``
    ``(height, width)`` the view was made from (numpy or torch, as given)."""
    height, width = shape
    view_height, view_width = (width, height) if quarter_turns % 2 else (height, width)
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    for _ in range(quarter_turns % 4):  # one clockwise quarter turn undoes one of rot90's
        # a point (x, y) of an array h pixels high goes to (h - y, x)
        x0, y0, x1, y1 = view_height - y1, x0, view_height - y0, x1
        view_height, view_width = view_width, view_height
    if flip:
        x0, x1 = view_width - x1, view_width - x0
    stack = np.stack if isinstance(boxes, np.ndarray) else _torch_stack
    return stack([x0, y0, x1, y1], 1)


def _torch_stack(columns, dim):
    import torch

    return torch.stack(columns, dim)
