"""U-Net that turns an image into a per-pixel source probability (ASID-L's mask generator).

The network of Stoppa et al. (2022) is ``UNetConfig(widths=(16, 32, 64, 128, 256))`` (about
2 M parameters): at each of the five levels two 3x3 convolutions with ReLU, 2x2 max-pooling
on the way down, 2x2 transposed convolutions on the way up, and skip connections that
concatenate encoder features into the decoder. skysift adds batch normalization (folded into
the convolutions at inference) and allows lighter widths and fewer levels; ``docs/models.md``
records which configuration ships and why.

The network outputs *logits*; :func:`torch.sigmoid` gives the probability map. Training uses
``BCEWithLogits`` + soft Dice on the sigmoid, the numerically correct form of ASID-L's loss
(the paper's code applied a from-logits cross-entropy to probabilities).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = ["PAPER_UNET", "UNet", "UNetConfig"]


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a :class:`UNet`.

    Attributes
    ----------
    in_channels : int
        Input bands.
    widths : tuple of int
        Feature channels per level, top (full resolution) to bottom. Input sides must be
        divisible by ``2 ** (len(widths) - 1)``.
    batchnorm : bool
        Batch normalization after each convolution.
    """

    in_channels: int = 1
    widths: tuple[int, ...] = (16, 32, 64, 128, 256)
    batchnorm: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if len(self.widths) < 2 or min(self.widths) < 1 or self.in_channels < 1:
            raise ValueError(f"invalid U-Net configuration {self}")

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (len(self.widths) - 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "widths": list(self.widths)}


#: ASID-L's U-Net (16-32-64-128-256, ~2 M parameters).
PAPER_UNET = UNetConfig(widths=(16, 32, 64, 128, 256))


def _double_conv(c_in: int, c_out: int, batchnorm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (c_in, c_out):
        layers.append(nn.Conv2d(c, c_out, kernel_size=3, padding=1, bias=not batchnorm))
        if batchnorm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net from ``config``; ``forward(x)`` maps ``(N, C, H, W)`` to ``(N, 1, H, W)`` logits."""

    def __init__(self, config: UNetConfig = PAPER_UNET) -> None:
        super().__init__()
        self.config = config
        widths = config.widths
        self.down = nn.ModuleList()
        c_in = config.in_channels
        for width in widths:
            self.down.append(_double_conv(c_in, width, config.batchnorm))
            c_in = width
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for deeper, width in zip(widths[:0:-1], widths[-2::-1], strict=True):
            self.up.append(nn.ConvTranspose2d(deeper, width, kernel_size=2, stride=2))
            self.merge.append(_double_conv(2 * width, width, config.batchnorm))
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = up(x)
            x = merge(torch.cat([x, skips.pop()], dim=1))
        return self.head(x)

    def num_parameters(self) -> int:
        """Trainable parameter count."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)
