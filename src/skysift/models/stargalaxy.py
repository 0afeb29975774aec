"""ASID-C's dual-branch star/galaxy network: a 32x32 cutout and the source's field position.

Image branch: three 3x3 convolutions of 32 filters (ReLU, no padding), each followed by 2x2
max-pooling (32 -> 30 -> 15 -> 13 -> 6 -> 4 -> 2), flattened to 128 features. Position
branch: dense 64 -> 32 (ReLU) on the normalized position. The two are concatenated and go
through two dense layers (256, 32) to one logit; ``sigmoid(logit)`` is the raw P(star) before
calibration. With the defaults this is 70,561 parameters (the paper quotes ~72k).

The position is normalized relative to the optical centre and the detector size (see
:func:`normalized_position`); the convention is stored in the model card.

With ``seeing_input`` the position branch also gets the image's seeing, ``log(FWHM /
seeing_reference)`` with the FWHM in pixels measured from the image's own bright sources
(:func:`skysift.stargalaxy.seeing_from_cutouts`): a cutout alone cannot tell a compact galaxy
in good seeing from a star in bad seeing, and the PSF at a source is the seeing times the
optical law of its position.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["StarGalaxyConfig", "StarGalaxyNet", "normalized_position"]


@dataclass(frozen=True)
class StarGalaxyConfig:
    """Architecture of :class:`StarGalaxyNet`.

    Attributes
    ----------
    cutout : int
        Cutout side in pixels (32).
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


class StarGalaxyNet(nn.Module):
    """``forward(cutouts (N, 1, 32, 32), context (N, C)) -> logits (N,)``.

    The context is the normalized position (C = 2), plus the seeing input when the config has
    ``seeing_input`` (C = 3).
    """

    def __init__(self, config: StarGalaxyConfig = StarGalaxyConfig()) -> None:
        super().__init__()
        self.config = config
        f = config.filters
        self.image = nn.Sequential(
            nn.Conv2d(1, f, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(f, f, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(f, f, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        with torch.no_grad():
            n_image = self.image(torch.zeros(1, 1, config.cutout, config.cutout)).shape[1]
        layers: list[nn.Module] = []
        width = config.context_size
        for w in config.position_widths:
            layers += [nn.Linear(width, w), nn.ReLU(inplace=True)]
            width = w
        self.position = nn.Sequential(*layers) if layers else None
        width = n_image + (width if layers else 0)
        head: list[nn.Module] = []
        for w in config.head_widths:
            head += [nn.Linear(width, w), nn.ReLU(inplace=True)]
            width = w
        head.append(nn.Linear(width, 1))
        self.head = nn.Sequential(*head)

    def embedding(self, cutouts: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (32-d by default), for UMAP/PCA views."""
        features = self.image(cutouts)
        if self.position is not None:
            features = torch.cat([features, self.position(positions)], dim=1)
        return self.head[:-1](features)

    def forward(self, cutouts: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.head[-1](self.embedding(cutouts, positions)).squeeze(1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
