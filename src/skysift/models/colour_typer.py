"""Colour typer network: star / galaxy / false from an instance's chain outputs and colours.

A multilayer perceptron on :func:`skysift.colour_typer.instance_features`: the inputs are
standardized by the training set's mean and standard deviation (kept as buffers, so they ship
in the weights), then two hidden layers with ReLU and one logit per class. With the defaults
(13 inputs for three bands, 64-64) it has 5.3 k parameters.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["ColourTyperConfig", "ColourTyperNet"]


@dataclass(frozen=True)
class ColourTyperConfig:
    """Architecture of the colour typer (stored in the model card).

    Parameters
    ----------
    features : int
        Inputs per instance.
    hidden : tuple of int
        Width of each hidden layer.
    classes : int
        Outputs (logits).
    """

    features: int = 13
    hidden: tuple[int, ...] = (64, 64)
    classes: int = 3

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ColourTyperConfig:
        return cls(**{**values, "hidden": tuple(values["hidden"])})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ColourTyperNet(nn.Module):
    """Standardize, then ``hidden`` ReLU layers, then one logit per class."""

    def __init__(self, config: ColourTyperConfig | None = None) -> None:
        super().__init__()
        self.config = config or ColourTyperConfig()
        self.register_buffer("mean", torch.zeros(self.config.features))
        self.register_buffer("scale", torch.ones(self.config.features))
        layers: list[nn.Module] = []
        width = self.config.features
        for size in self.config.hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, self.config.classes))
        self.layers = nn.Sequential(*layers)

    def standardize_with(self, features: torch.Tensor) -> None:
        """Set the input standardization from training ``features`` ``(n, features)``."""
        self.mean.copy_(features.mean(dim=0))
        self.scale.copy_(features.std(dim=0).clamp_min(1e-3))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers((features - self.mean) / self.scale)
