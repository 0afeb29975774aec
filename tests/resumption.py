"""Kill a training run right after it writes a checkpoint, resume it, compare weights.

A resumed run must end with the same bytes as one never interrupted: the checkpoint carries
every random stream (numpy's and torch's), so a shipped model's command reproduces its
weights even when its run was resumed.
"""

from __future__ import annotations

import pytest
import torch


class Killed(Exception):
    """Stands in for the process dying right after a checkpoint was written."""


def interrupted_then_resumed(monkeypatch, train, config):
    """``train(config)`` killed after its first ``torch.save``, then run again (resumed)."""
    real = torch.save

    def save_then_die(obj, path, *args, **kwargs):
        real(obj, path, *args, **kwargs)
        monkeypatch.setattr(torch, "save", real)
        raise Killed

    monkeypatch.setattr(torch, "save", save_then_die)
    with pytest.raises(Killed):
        train(config, progress=False)
    return train(config, progress=False)


def last_checkpoint_weights(run_dir) -> dict:
    return torch.load(f"{run_dir}/last.pt", weights_only=False)["model"]


def assert_same_weights(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def assert_resumed_copy_matches(monkeypatch, train, config, run_dir) -> None:
    """Run ``config`` again in ``run_dir``, killed after its first checkpoint and resumed,
    and check it ends with the weights ``config``'s finished run left in its ``last.pt``."""
    import dataclasses

    resumed = dataclasses.replace(config, run_dir=str(run_dir))
    interrupted_then_resumed(monkeypatch, train, resumed)
    assert_same_weights(
        last_checkpoint_weights(config.run_dir), last_checkpoint_weights(resumed.run_dir)
    )
