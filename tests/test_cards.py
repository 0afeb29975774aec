"""Every shipped model card says how to reproduce its weights."""

from __future__ import annotations

import json

import pytest

from skysift.models.registry import weights_dir

CARDS = sorted(weights_dir().glob("*.json"))


@pytest.mark.parametrize("path", CARDS, ids=[p.stem for p in CARDS])
def test_the_command_names_the_thread_count_it_was_trained_with(path):
    """CPU kernels sum in another order on another number of threads, so a card whose run
    used other than the default two threads must say so in its command."""
    training = json.loads(path.read_text())["training"]
    threads = training["config"].get("threads", 2)
    command = training["command"]
    assert command.startswith("skysift train ")
    assert ("--threads" in command) == (threads != 2), command
    if threads != 2:
        assert f"--threads {threads}" in command
    base = training.get("initialized_from")
    if base:  # the base model's own card holds the same command
        base_card = json.loads((path.parent / f"{base['name']}.json").read_text())
        assert base["command"] == base_card["training"]["command"]
