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

import torch
from torch import nn

from skysift.models.stargalaxy_inputs import StarGalaxyConfig, normalized_position

__all__ = ["StarGalaxyConfig", "StarGalaxyNet", "normalized_position"]


class StarGalaxyNet(nn.Module):
    """``forward(cutouts (N, in_channels, 32, 32), context (N, C)) -> logits``: ``(N,)``, or
    ``(N, outputs)`` when the config has more than one output.

    The context is the normalized position (C = 2), plus the seeing input when the config has
    ``seeing_input`` (C = 3).
    """

    def __init__(self, config: StarGalaxyConfig | None = None) -> None:
        super().__init__()
        config = config or StarGalaxyConfig()
        self.config = config
        f = config.filters
        self.image = nn.Sequential(
            nn.Conv2d(config.in_channels, f, 3),
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
            n_image = self.image(
                torch.zeros(1, config.in_channels, config.cutout, config.cutout)
            ).shape[1]
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
        head.append(nn.Linear(width, config.outputs))
        self.head = nn.Sequential(*head)

    def embedding(self, cutouts: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """The last hidden layer (32-d by default), for UMAP/PCA views."""
        features = self.image(cutouts)
        if self.position is not None:
            features = torch.cat([features, self.position(positions)], dim=1)
        return self.head[:-1](features)

    def forward(self, cutouts: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        logits = self.head[-1](self.embedding(cutouts, positions))
        return logits.squeeze(1) if self.config.outputs == 1 else logits

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
