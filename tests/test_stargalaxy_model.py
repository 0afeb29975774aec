"""The ASID-C network: size, shapes, and that the position branch is used."""

from __future__ import annotations

import numpy as np
import torch

from skysift.models.stargalaxy import StarGalaxyConfig, StarGalaxyNet, normalized_position


def test_parameter_count_matches_the_paper():
    assert 65_000 <= StarGalaxyNet().num_parameters() <= 75_000


def test_shapes_and_embedding():
    net = StarGalaxyNet().eval()
    cutouts, positions = torch.randn(5, 1, 32, 32), torch.randn(5, 2)
    assert net(cutouts, positions).shape == (5,)
    assert net.embedding(cutouts, positions).shape == (5, 32)


def test_position_branch_changes_the_output_and_can_be_removed():
    torch.manual_seed(0)
    net = StarGalaxyNet().eval()
    cutout = torch.randn(1, 1, 32, 32)
    centre = net(cutout, torch.tensor([[0.0, 0.0]]))
    corner = net(cutout, torch.tensor([[1.0, 1.0]]))
    assert not torch.allclose(centre, corner)
    ablated = StarGalaxyNet(StarGalaxyConfig(position_widths=())).eval()
    assert torch.allclose(ablated(cutout, torch.zeros(1, 2)), ablated(cutout, torch.ones(1, 2)))


def test_normalized_position():
    xy = normalized_position(
        [0, 100, 200], [0, 50, 100], optical_centre=(100, 50), half_size=(100, 50)
    )
    np.testing.assert_allclose(xy, [[-1, -1], [0, 0], [1, 1]])
