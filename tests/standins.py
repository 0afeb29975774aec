"""Stand-ins for networks, to test the code around them without training.

``ThresholdSegmenter`` answers like torchvision's Mask R-CNN in eval mode (boxes, labels,
scores, mask probabilities per tile) by thresholding each tile: every object is found by
every tile that sees part of it.
"""

from __future__ import annotations

import numpy as np
import torch

from skysift.models.segmenter import SegmenterConfig

CARD = {
    "name": "threshold-stand-in",
    "architecture": {"kind": "segmenter", "config": SegmenterConfig().to_dict()},
    "normalization": {"kind": "asinh_mad", "softening": 4.0},
}


class ThresholdSegmenter(torch.nn.Module):
    """Mask R-CNN's interface: every connected bright region of a tile is an instance."""

    def __init__(self, level: float = 1.0) -> None:
        super().__init__()
        self.level = level
        self.calls = 0

    def forward(self, images):
        from scipy import ndimage

        self.calls += len(images)
        outputs = []
        for image in images:
            light = image.numpy().mean(axis=0)
            labels, _ = ndimage.label(light > self.level)
            boxes, masks, scores = [], [], []
            for k, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
                if (labels == k).sum() < 5:  # noise specks
                    continue
                boxes.append([cols.start, rows.start, cols.stop, rows.stop])
                masks.append((labels == k)[np.newaxis].astype(np.float32))
                scores.append(0.9)
            outputs.append(
                {
                    "boxes": torch.tensor(np.array(boxes, dtype=np.float32).reshape(-1, 4)),
                    "labels": torch.full((len(scores),), 2, dtype=torch.int64),  # elliptical
                    "scores": torch.tensor(np.array(scores, dtype=np.float32)),
                    # the heads' group probabilities (SourceRoIHeads): a galaxy, surely a source
                    "p_star": torch.full((len(scores),), 0.05),
                    "p_galaxy": torch.tensor(np.array(scores, dtype=np.float32)),
                    "masks": torch.tensor(
                        np.array(masks, dtype=np.float32).reshape(len(scores), 1, *light.shape)
                    ),
                }
            )
        return outputs
