"""The star/galaxy network's inputs without PyTorch: its configuration and context columns.

Inference runs the network through ONNX Runtime and needs only numpy to build the network's
second input (normalized position, seeing); keeping these here lets the pipeline classify
sources without importing torch (:mod:`skysift.models.stargalaxy` holds the network itself).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["ShippedStarGalaxyNetwork", "StarGalaxyConfig", "normalized_position"]


@dataclass(frozen=True)
class StarGalaxyConfig:
    """Architecture of :class:`StarGalaxyNet`.

    Attributes
    ----------
    cutout : int
        Cutout side in pixels (32).
    in_channels : int
        Cutout channels: 1 (ASID-C's single band), or more (e.g. the segmenter's second look:
        its bands and the instance's mask).
    outputs : int
        Logits: 1 (P(star) = sigmoid), or one per class (softmax; e.g. galaxy, star and false
        detection for the segmenter's second look).
    filters : int
        Filters of each convolution (32).
    position_widths : (int, int)
        Dense layers of the position branch (64, 32); ``()`` removes the branch and the network
        ignores its second input (the paper's appendix-A ablation).
    head_widths : (int, int)
        Dense layers after the concatenation.
    position_input : bool
        The branch gets the normalized position (x, y).
    seeing_input : bool
        The branch gets the image's seeing (after the position when both are on).
    seeing_reference : float
        FWHM in pixels that maps to 0 in the seeing input.
    """

    cutout: int = 32
    in_channels: int = 1
    outputs: int = 1
    filters: int = 32
    position_widths: tuple[int, ...] = (64, 32)
    head_widths: tuple[int, ...] = (256, 32)
    position_input: bool = True
    seeing_input: bool = False
    seeing_reference: float = 4.5

    def __post_init__(self) -> None:
        if self.seeing_input and not self.position_widths:
            raise ValueError("seeing_input needs the position branch (position_widths)")
        if self.position_widths and self.context_size == 0:
            raise ValueError("a position branch needs position_input or seeing_input")

    @property
    def context_size(self) -> int:
        """Columns of the second input: x, y (with ``position_input``), then the seeing."""
        return 2 * int(self.position_input) + int(self.seeing_input)

    def seeing_feature(self, fwhm_pixels) -> np.ndarray:
        """The seeing input for a FWHM in pixels: ``log(fwhm / seeing_reference)``."""
        return np.log(np.asarray(fwhm_pixels, np.float64) / self.seeing_reference).astype(
            np.float32
        )

    def context(self, positions: np.ndarray, seeing_fwhm=None) -> np.ndarray:
        """The network's second input, ``(n, context_size)`` float32.

        Parameters
        ----------
        positions : numpy.ndarray
            ``(n, 2)`` normalized positions (used with ``position_input``).
        seeing_fwhm : float or numpy.ndarray, optional
            Seeing FWHM in pixels, one value or one per source (used with ``seeing_input``);
            NaN (no estimate) stands for ``seeing_reference``.
        """
        positions = np.asarray(positions, np.float32).reshape(-1, 2)
        columns = [positions] if self.position_input else []
        if self.seeing_input:
            if seeing_fwhm is None:
                raise ValueError("this network takes the seeing: pass seeing_fwhm")
            fwhm = np.broadcast_to(np.asarray(seeing_fwhm, np.float64), (len(positions),))
            fwhm = np.where(np.isfinite(fwhm), fwhm, self.seeing_reference)
            columns.append(self.seeing_feature(fwhm)[:, np.newaxis])
        if not columns:
            return np.zeros((len(positions), 0), np.float32)
        return np.hstack(columns).astype(np.float32)

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "position_widths": list(self.position_widths),
            "head_widths": list(self.head_widths),
        }

    @classmethod
    def from_dict(cls, data: dict) -> StarGalaxyConfig:
        """Inverse of :meth:`to_dict` (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def normalized_position(x, y, *, optical_centre, half_size) -> np.ndarray:
    """``((x - cx) / half_width, (y - cy) / half_height)``: the position branch's input.

    ``optical_centre`` is ``(cx, cy)`` in 0-based pixels of the full detector image and
    ``half_size`` its ``(half_width, half_height)``; the corners of a detector centred on the
    optical axis map to (+-1, +-1).
    """
    cx, cy = optical_centre
    hw, hh = half_size
    return np.column_stack(
        [(np.asarray(x, float) - cx) / hw, (np.asarray(y, float) - cy) / hh]
    ).astype(np.float32)


class ShippedStarGalaxyNetwork:
    """A network of ASID-C's architecture with its model card: the shipped model ``name``, or
    ``module`` with its ``card`` (training and tests).

    Subclasses (the segmenter's second look, the shred classifier) check that the card's
    architecture is theirs; ``what`` names them in errors.

    Parameters
    ----------
    name : str
        Shipped model name.
    module : torch.nn.Module, optional
        A network to use instead of the shipped one (training and tests); needs ``card``.
    card : dict, optional
        The model card of ``module``.
    """

    what = "module"

    def __init__(self, name: str, *, module=None, card=None) -> None:
        from skysift.models.registry import shipped_or_given

        self.module, self.card = shipped_or_given(name, module, card, what=self.what)
        self.config = StarGalaxyConfig.from_dict(self.card["architecture"]["config"])
