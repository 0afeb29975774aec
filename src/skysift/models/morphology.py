"""Galaxy-type network: elliptical / spiral / other from a size-normalized galaxy stamp.

The segmenter's Mask R-CNN types a galaxy from 7x7 RoIAlign features of a trunk trained from
scratch on ~1,100 central galaxies; arms of a spiral barely survive that (session 5: spirals
typed right 71 %, ellipticals 89 %, at every S/N). This network sees the galaxy itself: a
``(bands, 64, 64)`` stamp resampled from a square around the instance's box
(:func:`skysift.morphology.galaxy_stamp`), so every galaxy fills the stamp whatever its size,
and it is trained on tens of thousands of simulated galaxies.

Four stages of two 3x3 convolutions (batch norm, ReLU), 2x2 max-pooling between stages,
global average pooling, dropout and a linear layer to one logit per class. With the defaults
(16-32-64-128) this is 0.29 M parameters (32-64-96-128: 0.46 M, 2.6x slower to train).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["GALAXY_CLASSES", "MorphologyConfig", "MorphologyNet"]

#: Galaxy types, in the network's output order.
GALAXY_CLASSES: tuple[str, ...] = ("elliptical", "spiral", "other")


@dataclass(frozen=True)
class MorphologyConfig:
    """Architecture of the galaxy-type network (stored in the model card).

    Parameters
    ----------
    in_channels : int
        Bands of the stamp.
    stamp : int
        Stamp side in pixels.
    widths : tuple of int
        Channels of each stage.
    dropout : float
        Dropout before the last layer.
    classes : tuple of str
        Output classes.
    """

    in_channels: int = 3
    stamp: int = 64
    widths: tuple[int, ...] = (16, 32, 64, 128)
    dropout: float = 0.2
    classes: tuple[str, ...] = GALAXY_CLASSES

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MorphologyConfig:
        return cls(
            **{
                **values,
                "widths": tuple(values["widths"]),
                "classes": tuple(values["classes"]),
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _stage(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class MorphologyNet(nn.Module):
    """``forward(stamps (N, bands, 64, 64)) -> logits (N, classes)``."""

    def __init__(self, config: MorphologyConfig | None = None) -> None:
        super().__init__()
        config = config or MorphologyConfig()
        self.config = config
        layers: list[nn.Module] = []
        width = config.in_channels
        for index, w in enumerate(config.widths):
            if index:
                layers.append(nn.MaxPool2d(2))
            layers.append(_stage(width, w))
            width = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(config.dropout),
            nn.Linear(width, len(config.classes)),
        )

    def forward(self, stamps: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(stamps))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
