"""Mask R-CNN segmenter: detection, instance masks and morphology in one network.

The network is torchvision's :class:`~torchvision.models.detection.MaskRCNN` (RPN, RoIAlign,
box and mask heads are torchvision's), sized for this project's constraints. With
``SegmenterConfig(masks=False)`` the same trunk, anchors and box head make a
:class:`~torchvision.models.detection.FasterRCNN`: the box-only variant of the R-CNN family
that the method comparison needs (detection and class without a mask head).

- **Backbone.** No pretrained weights can be downloaded, so the trunk is a compact residual
  network trained from scratch: a stride-2 stem and four stages of torchvision
  :class:`~torchvision.models.resnet.BasicBlock` at strides 4, 8, 16 and 32, each feeding a
  feature pyramid (:class:`~torchvision.ops.FeaturePyramidNetwork`) plus a max-pooled level
  at stride 64: the strides {4, 8, 16, 32, 64} of the Mask Galaxy paper's Table 1.
- **Anchors** of 4 to 128 pixels (the paper's {4, 8, 16, 32, 128} plus intermediate sizes),
  three aspect ratios, one pair of sizes per pyramid level.
- **Heads** narrower than torchvision's defaults (a 256-wide box MLP instead of 1024, a
  4-layer mask head of ``fpn_channels``) to keep the shipped weights a few MB.
- **Input** is a normalized ``(bands, 256, 256)`` tile; the detector's internal resize is
  switched off by fixing its size to the tile size, so pixels keep their scale.
- **One detection per source.** torchvision turns every region proposal into one detection
  per class whose probability passes the score threshold, so a compact galaxy comes out as
  a star *and* as a galaxy, and the copy that loses the match counts against whichever class
  it carries. With ``class_decision="star_or_galaxy"`` (the default) each proposal gives
  one detection: a star when P(star) is at least the summed probability of the galaxy
  classes, otherwise a galaxy of its most probable galaxy class, scored by the probability
  of the group it was given (as Matterport's Mask R-CNN, used by Burke et al. 2019, keeps
  one class per proposal), and overlapping detections are suppressed whatever their class
  (each is a hypothesis for one source). ``"per_class"`` keeps torchvision's behaviour.

Classes (index 0 is background): star, elliptical, spiral, other (any other galaxy).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "CLASSES",
    "CLASS_DECISIONS",
    "PSF_CHANNEL_OFFSET",
    "CompactTrunk",
    "SegmenterConfig",
    "build_segmenter",
    "with_psf_channel",
    "with_zero_psf_weights",
]

#: Instance classes, in the network's label order (label = index + 1; 0 is background).
CLASSES: tuple[str, ...] = ("star", "elliptical", "spiral", "other")
#: How region proposals become detections (see the module notes).
CLASS_DECISIONS: tuple[str, ...] = ("star_or_galaxy", "per_class")
#: PSF FWHM (pixels) that the PSF channel shows as 0 (typical FWHMs are 2.5-6.5 pixels).
PSF_CHANNEL_OFFSET = 4.0


def with_psf_channel(image: np.ndarray, psf_fwhm: float) -> np.ndarray:
    """``image`` ``(bands, H, W)`` with the PSF channel appended (see ``psf_channel``).

    Parameters
    ----------
    image : numpy.ndarray
        Normalized bands.
    psf_fwhm : float
        Detection-band PSF FWHM in pixels.
    """
    from skysift.errors import InvalidParameterError

    if not (np.isfinite(psf_fwhm) and psf_fwhm > 0):
        raise InvalidParameterError(f"psf_fwhm must be a positive number of pixels; got {psf_fwhm}")
    plane = np.full((1, *np.shape(image)[1:]), psf_fwhm - PSF_CHANNEL_OFFSET, dtype=np.float32)
    return np.concatenate([np.asarray(image, dtype=np.float32), plane])


#: The first convolution's weights, ``(out, in, 3, 3)``: the only layer that sees the bands.
STEM_WEIGHT = "backbone.body.stem.0.weight"


def with_zero_psf_weights(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of a segmenter ``state`` dict with a PSF input channel added to its stem.

    The new channel's weights are zero, so the network's output does not change: a model
    without the PSF channel becomes the starting point of one that has it.
    """
    stem = state[STEM_WEIGHT]
    zeros = torch.zeros_like(stem[:, :1])
    return {**state, STEM_WEIGHT: torch.cat([stem, zeros], dim=1)}


@dataclass(frozen=True)
class SegmenterConfig:
    """Architecture of the segmenter (stored in the model card).

    Parameters
    ----------
    in_channels : int
        Input bands.
    classes : tuple of str
        Instance classes (background excluded).
    widths : tuple of int
        Channels of the stem and the four residual stages' outputs
        ``(stem, stride 4, 8, 16, 32)``.
    blocks : tuple of int
        Residual blocks per stage.
    fpn_channels : int
        Channels of every pyramid level and of the heads' convolutions.
    box_head_width : int
        Width of the two-layer box head.
    anchor_sizes : tuple of tuple of float
        Anchor sizes (pixels) per pyramid level (strides 4, 8, 16, 32, 64).
    aspect_ratios : tuple of float
        Anchor aspect ratios, shared by every level.
    image_size : int
        Tile side the network runs on (no internal resizing).
    rpn_nms_threshold : float
        Non-maximum suppression IoU of the region proposals (0.7-0.8 in the paper).
    detections_per_image : int
        Most instances kept per tile.
    score_threshold : float
        Lowest instance score returned.
    masks : bool
        Mask R-CNN (True) or the box-only Faster R-CNN (False).
    class_decision : str
        ``"star_or_galaxy"``: one detection per region proposal, star or galaxy by the
        summed class probabilities, suppression across classes; ``"per_class"``:
        torchvision's one detection per proposal and class, suppression within a class.
        Inference only; it does not change the weights.
    psf_channel : bool
        One more input channel after the bands, holding the detection band's PSF FWHM in
        pixels minus :data:`PSF_CHANNEL_OFFSET` everywhere (:func:`with_psf_channel`): the
        reference that tells a compact galaxy from a star in any seeing.
    """

    in_channels: int = 3
    classes: tuple[str, ...] = CLASSES
    widths: tuple[int, ...] = (24, 32, 64, 128, 192)
    blocks: tuple[int, ...] = (1, 2, 2, 1)
    fpn_channels: int = 64
    box_head_width: int = 256
    anchor_sizes: tuple[tuple[float, ...], ...] = ((4, 6), (8, 12), (16, 24), (32, 48), (64, 128))
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    image_size: int = 256
    rpn_nms_threshold: float = 0.7
    detections_per_image: int = 200
    score_threshold: float = 0.05
    masks: bool = True
    class_decision: str = "star_or_galaxy"
    psf_channel: bool = False

    @property
    def input_channels(self) -> int:
        """Channels the network takes: the bands, plus the PSF channel if any."""
        return self.in_channels + int(self.psf_channel)

    def __post_init__(self) -> None:
        if self.class_decision not in CLASS_DECISIONS:
            raise ValueError(
                f"class_decision must be one of {CLASS_DECISIONS}; got {self.class_decision!r}"
            )
        if len(self.widths) != 5 or len(self.blocks) != 4:
            raise ValueError("widths needs 5 entries (stem + 4 stages) and blocks 4")
        if len(self.anchor_sizes) != 5:
            raise ValueError("anchor_sizes needs one tuple per pyramid level (5)")
        if len({len(s) for s in self.anchor_sizes}) != 1:
            raise ValueError("every pyramid level needs the same number of anchor sizes")
        if self.image_size % 64:
            raise ValueError(f"image_size must be a multiple of 64, got {self.image_size}")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["anchor_sizes"] = [list(s) for s in self.anchor_sizes]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmenterConfig:
        values = dict(data)
        if "anchor_sizes" in values:
            values["anchor_sizes"] = tuple(tuple(s) for s in values["anchor_sizes"])
        for key in ("classes", "widths", "blocks", "aspect_ratios"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


class CompactTrunk(nn.Module):
    """Residual trunk returning the stride-4/8/16/32 feature maps (keys ``"0"``-``"3"``)."""

    def __init__(self, config: SegmenterConfig) -> None:
        from torchvision.models.resnet import BasicBlock

        super().__init__()
        stem = config.widths[0]
        self.stem = nn.Sequential(
            nn.Conv2d(config.input_channels, stem, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
        )
        stages = []
        previous = stem
        for width, count in zip(config.widths[1:], config.blocks, strict=True):
            down = nn.Sequential(
                nn.Conv2d(previous, width, 1, stride=2, bias=False), nn.BatchNorm2d(width)
            )
            layers = [BasicBlock(previous, width, stride=2, downsample=down)]
            layers += [BasicBlock(width, width) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            previous = width
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        x = self.stem(x)
        features: OrderedDict[str, torch.Tensor] = OrderedDict()
        for index, stage in enumerate(self.stages):
            x = stage(x)
            features[str(index)] = x
        return features


class _TrunkWithFPN(nn.Module):
    """Trunk + feature pyramid, with the ``out_channels`` attribute Mask R-CNN reads."""

    def __init__(self, config: SegmenterConfig) -> None:
        from torchvision.ops import FeaturePyramidNetwork
        from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

        super().__init__()
        self.body = CompactTrunk(config)
        self.fpn = FeaturePyramidNetwork(
            list(config.widths[1:]), config.fpn_channels, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = config.fpn_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def build_segmenter(config: SegmenterConfig | None = None) -> nn.Module:
    """torchvision Mask R-CNN with the compact trunk, source-sized anchors and slim heads.

    Parameters
    ----------
    config : SegmenterConfig, optional
        Architecture (defaults: 3 bands, 4 classes, 256x256 tiles, with masks).

    Returns
    -------
    torchvision.models.detection.MaskRCNN or FasterRCNN
        In training mode it takes ``(images, targets)`` and returns losses; in eval mode a
        list of dicts with ``boxes`` (x0, y0, x1, y1), ``labels``, ``scores`` and, with
        masks, ``masks`` (``(n, 1, H, W)`` probabilities). ``config.masks=False`` gives the
        box-only :class:`~torchvision.models.detection.FasterRCNN` with the same trunk,
        anchors and box head.
    """
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    config = config or SegmenterConfig()
    backbone = _TrunkWithFPN(config)
    channels = config.fpn_channels
    n_classes = len(config.classes) + 1
    anchors = AnchorGenerator(sizes=config.anchor_sizes, aspect_ratios=(config.aspect_ratios,) * 5)
    levels = ["0", "1", "2", "3"]
    common = {
        "num_classes": None,
        "min_size": config.image_size,
        "max_size": config.image_size,
        "image_mean": [0.0] * config.input_channels,
        "image_std": [1.0] * config.input_channels,
        "rpn_anchor_generator": anchors,
        "rpn_nms_thresh": config.rpn_nms_threshold,
        "rpn_pre_nms_top_n_train": 1000,
        "rpn_post_nms_top_n_train": 1000,
        "rpn_pre_nms_top_n_test": 1000,
        "rpn_post_nms_top_n_test": 600,
        "box_roi_pool": MultiScaleRoIAlign(levels, output_size=7, sampling_ratio=2),
        "box_head": TwoMLPHead(channels * 7 * 7, config.box_head_width),
        "box_predictor": FastRCNNPredictor(config.box_head_width, n_classes),
        "box_score_thresh": config.score_threshold,
        "box_detections_per_img": config.detections_per_image,
        "box_batch_size_per_image": 256,
    }
    if config.masks:
        model = MaskRCNN(
            backbone,
            mask_roi_pool=MultiScaleRoIAlign(levels, output_size=14, sampling_ratio=2),
            mask_head=MaskRCNNHeads(channels, (channels,) * 4, 1),
            mask_predictor=MaskRCNNPredictor(channels, channels, n_classes),
            **common,
        )
    else:
        model = FasterRCNN(backbone, **common)
    model.roi_heads = _one_class_heads(model.roi_heads, config)
    model.skysift_config = config
    return model


@functools.cache
def _source_roi_heads_class():
    """torchvision's RoI heads with one detection per proposal (made on first use, so that
    importing this module does not import torchvision)."""
    from torchvision.models.detection.roi_heads import RoIHeads

    class SourceRoIHeads(RoIHeads):
        """RoI heads whose detections follow ``class_decision`` (see the module notes)."""

        class_decision = "per_class"
        star_label = 0

        def forward(self, features, proposals, image_shapes, targets=None):
            self._groups = None
            result, losses = super().forward(features, proposals, image_shapes, targets)
            if self._groups is not None and not self.training:
                for detections, (p_star, p_galaxy) in zip(result, self._groups, strict=True):
                    detections["p_star"], detections["p_galaxy"] = p_star, p_galaxy
            self._groups = None
            return result, losses

        def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
            if self.class_decision == "per_class":
                return super().postprocess_detections(
                    class_logits, box_regression, proposals, image_shapes
                )
            boxes, scores, labels, self._groups = _one_detection_per_proposal(
                self, class_logits, box_regression, proposals, image_shapes
            )
            return boxes, scores, labels

    return SourceRoIHeads


def _one_class_heads(heads, config: SegmenterConfig):
    """``heads`` (torchvision's RoI heads) rebuilt with the same modules and settings as
    RoI heads that follow ``config.class_decision``."""
    SourceRoIHeads = _source_roi_heads_class()
    rebuilt = SourceRoIHeads(
        heads.box_roi_pool,
        heads.box_head,
        heads.box_predictor,
        fg_iou_thresh=heads.proposal_matcher.high_threshold,
        bg_iou_thresh=heads.proposal_matcher.low_threshold,
        batch_size_per_image=heads.fg_bg_sampler.batch_size_per_image,
        positive_fraction=heads.fg_bg_sampler.positive_fraction,
        bbox_reg_weights=heads.box_coder.weights,
        score_thresh=heads.score_thresh,
        nms_thresh=heads.nms_thresh,
        detections_per_img=heads.detections_per_img,
        mask_roi_pool=heads.mask_roi_pool,
        mask_head=heads.mask_head,
        mask_predictor=heads.mask_predictor,
    )
    rebuilt.class_decision = config.class_decision
    rebuilt.star_label = config.classes.index("star") + 1 if "star" in config.classes else 0
    return rebuilt


def _one_detection_per_proposal(heads, class_logits, box_regression, proposals, image_shapes):
    """Boxes, scores and labels per image with one class per proposal (see module notes), and
    per image the kept detections' ``(P(star), P(any galaxy class))``; their sum is the
    probability that the detection is a source at all (not background)."""
    from torch.nn import functional
    from torchvision.ops import boxes as box_ops

    counts = [len(p) for p in proposals]
    decoded = heads.box_coder.decode(box_regression, proposals)
    probabilities = functional.softmax(class_logits, -1)
    star = heads.star_label
    n_labels = probabilities.shape[1]
    galaxy_labels = torch.tensor([k for k in range(1, n_labels) if k != star])
    out_boxes, out_scores, out_labels, out_groups = [], [], [], []
    for boxes, p, shape in zip(
        decoded.split(counts, 0), probabilities.split(counts, 0), image_shapes, strict=True
    ):
        boxes = box_ops.clip_boxes_to_image(boxes, shape)
        p_star = p[:, star] if star else torch.zeros(len(p))
        galaxy = p[:, galaxy_labels] if len(galaxy_labels) else torch.zeros(len(p), 0)
        p_galaxy = galaxy.sum(1)
        if star and len(galaxy_labels):  # a star class and at least one galaxy class
            galaxy_label = galaxy_labels[galaxy.argmax(1)]
            is_star = p_star >= p_galaxy
            labels = torch.where(is_star, torch.full_like(galaxy_label, star), galaxy_label)
            scores = torch.where(is_star, p_star, p_galaxy)
        else:
            scores, labels = p[:, 1:].max(1)
            labels = labels + 1
        boxes = boxes.reshape(len(p), n_labels, 4)[torch.arange(len(labels)), labels]
        keep = torch.where(scores > heads.score_thresh)[0]
        small = box_ops.remove_small_boxes(boxes[keep], min_size=1e-2)
        keep = keep[small]
        suppressed = box_ops.nms(boxes[keep], scores[keep], heads.nms_thresh)  # one per source
        keep = keep[suppressed[: heads.detections_per_img]]
        out_boxes.append(boxes[keep])
        out_scores.append(scores[keep])
        out_labels.append(labels[keep])
        out_groups.append((p_star[keep], p_galaxy[keep]))
    return out_boxes, out_scores, out_labels, out_groups
