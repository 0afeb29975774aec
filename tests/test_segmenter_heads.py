"""The segmenter's RoI heads: one detection per region proposal, star or galaxy."""

from __future__ import annotations

import math

import pytest
import torch

from skysift.models.segmenter import SegmenterConfig, build_segmenter

# background, star, elliptical, spiral, other
PROBABILITIES = [
    [0.00, 0.40, 0.35, 0.00, 0.25],  # a compact galaxy: P(star) is the largest class...
    [0.12, 0.70, 0.04, 0.04, 0.10],  # a star
    [0.97, 0.01, 0.01, 0.00, 0.01],  # background
    [0.00, 0.50, 0.30, 0.00, 0.20],  # a tie: star
]


def _heads(decision: str):
    return build_segmenter(SegmenterConfig(class_decision=decision)).roi_heads


def _postprocess(heads):
    proposals = torch.tensor(
        [[10.0, 10, 20, 20], [40, 40, 46, 46], [0, 0, 30, 8], [60, 10, 70, 22]]
    )
    logits = torch.log(torch.tensor(PROBABILITIES).clamp_min(1e-9))
    regression = torch.zeros(len(proposals), 5 * 4)  # boxes stay the proposals
    (boxes,), (scores,), (labels,) = heads.postprocess_detections(
        logits, regression, [proposals], [(128, 128)]
    )
    order = torch.argsort(boxes[:, 0] * 1000 + boxes[:, 1])
    return boxes[order], scores[order], labels[order]


def test_one_detection_per_proposal_by_summed_galaxy_probability():
    boxes, scores, labels = _postprocess(_heads("star_or_galaxy"))
    assert boxes.tolist() == [[10, 10, 20, 20], [40, 40, 46, 46], [60, 10, 70, 22]]
    # ...but the galaxy classes together are more probable: a galaxy, of its top galaxy class
    assert labels.tolist() == [2, 1, 1]
    assert scores.tolist() == pytest.approx([0.60, 0.70, 0.50], abs=1e-5)


def test_per_class_keeps_torchvision_detections():
    boxes, _scores, labels = _postprocess(_heads("per_class"))
    first = (boxes == torch.tensor([10.0, 10, 20, 20])).all(dim=1)
    assert sorted(labels[first].tolist()) == [1, 2, 4]  # a star and two galaxies
    assert len(labels) == 8


def test_heads_keep_torchvision_settings_and_weights():
    from torchvision.models.detection.roi_heads import RoIHeads

    heads = _heads("star_or_galaxy")
    assert isinstance(heads, RoIHeads)
    assert heads.proposal_matcher.high_threshold == heads.proposal_matcher.low_threshold == 0.5
    assert heads.fg_bg_sampler.batch_size_per_image == 256
    assert heads.fg_bg_sampler.positive_fraction == 0.25
    assert tuple(heads.box_coder.weights) == (10.0, 10.0, 5.0, 5.0)
    assert heads.nms_thresh == 0.5
    assert math.isclose(heads.score_thresh, 0.05)
    keys = set(build_segmenter(SegmenterConfig(class_decision="per_class")).state_dict())
    assert keys == set(build_segmenter().state_dict())


def _overlapping(decision: str):
    """A star and a galaxy hypothesis for one source (box IoU 0.91), and a galaxy apart."""
    proposals = torch.tensor([[10.0, 10, 20, 20], [10, 10, 20, 21], [40, 40, 50, 50]])
    logits = torch.log(torch.tensor([PROBABILITIES[1], PROBABILITIES[0], PROBABILITIES[0]]))
    (boxes,), (_scores,), (labels,) = _heads(decision).postprocess_detections(
        logits, torch.zeros(3, 20), [proposals], [(64, 64)]
    )
    return boxes, labels


def test_overlapping_detections_of_different_classes_are_one_source():
    boxes, labels = _overlapping("star_or_galaxy")
    assert labels.tolist() == [1, 2]  # the star (0.70) suppresses the galaxy (0.60)
    assert boxes[:, 0].tolist() == [10, 40]
    _, labels = _overlapping("per_class")  # torchvision suppresses within a class only
    assert (labels == 1).sum() == 2
    assert (labels == 2).sum() == 2


def test_unknown_class_decision_is_refused():
    with pytest.raises(ValueError, match="class_decision must be one of"):
        SegmenterConfig(class_decision="argmax")


def test_without_a_star_class_the_most_probable_class_is_kept():
    heads = build_segmenter(SegmenterConfig(classes=("elliptical", "spiral", "other"))).roi_heads
    proposals = torch.tensor([[10.0, 10, 20, 20]])
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.5, 0.2]]))
    (_boxes,), (scores,), (labels,) = heads.postprocess_detections(
        logits, torch.zeros(1, 16), [proposals], [(64, 64)]
    )
    assert labels.tolist() == [2]
    assert scores.tolist() == pytest.approx([0.5])


def test_no_proposals_and_a_star_only_model():
    heads = _heads("star_or_galaxy")
    (boxes,), (scores,), (labels,) = heads.postprocess_detections(
        torch.zeros(0, 5), torch.zeros(0, 20), [torch.zeros(0, 4)], [(64, 64)]
    )
    assert boxes.shape == (0, 4)
    assert len(scores) == len(labels) == 0
    stars = build_segmenter(SegmenterConfig(classes=("star",))).roi_heads
    (boxes,), (scores,), (labels,) = stars.postprocess_detections(
        torch.log(torch.tensor([[0.2, 0.8]])),
        torch.zeros(1, 8),
        [torch.tensor([[1.0, 1, 5, 5]])],
        [(64, 64)],
    )
    assert labels.tolist() == [1]
    assert scores.tolist() == pytest.approx([0.8])


def test_eval_detections_carry_their_star_and_galaxy_probabilities():
    """Each detection reports P(star) and P(any galaxy class); its score is the larger, its
    class follows it, and their sum (the probability of a source at all) is at most 1."""
    torch.manual_seed(0)
    model = build_segmenter().eval()
    with torch.no_grad():
        (detections,) = model([torch.randn(3, 64, 64)])
    assert len(detections["scores"]) > 0
    p_star, p_galaxy = detections["p_star"], detections["p_galaxy"]
    assert p_star.shape == p_galaxy.shape == detections["scores"].shape
    assert torch.allclose(detections["scores"], torch.maximum(p_star, p_galaxy))
    assert torch.equal(detections["labels"] == 1, p_star >= p_galaxy)
    assert bool(((p_star + p_galaxy) <= 1 + 1e-6).all())
    model.train()
    images = [torch.randn(3, 64, 64)]
    targets = [
        {
            "boxes": torch.tensor([[10.0, 10, 20, 20]]),
            "labels": torch.tensor([1]),
            "masks": torch.zeros(1, 64, 64, dtype=torch.uint8),
        }
    ]
    assert "loss_classifier" in model(images, targets)  # training is unchanged
