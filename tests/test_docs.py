"""The documentation's own links: every relative link and image in README.md and docs/ names a
file of the repository (benchmark pages are written by scripts, so a wrong name slips in)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def relative_targets(page: Path) -> list[str]:
    """The link targets of a Markdown page that point into the repository (no URL, no anchor
    of the same page), without their own anchors."""
    targets = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_name_existing_files(page):
    missing = [t for t in relative_targets(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"


def test_link_finder_sees_images_and_skips_urls(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "![a](img/a.png) [b](b.md#part) [c](https://example.org/c) [d](#top) [e](mailto:x@y.z)\n",
        encoding="utf-8",
    )
    assert relative_targets(page) == ["img/a.png", "b.md"]


@pytest.mark.parametrize(
    "page", sorted((ROOT / "docs" / "benchmarks").glob("*.md")), ids=lambda p: p.name
)
def test_benchmark_pages_show_their_own_figures(page):
    """A benchmark page shows the figures its own run drew (``<page>_noise.png``, ...), not
    another configuration's."""
    images = [t for t in relative_targets(page) if t.startswith("../images/")]
    foreign = [t for t in images if not Path(t).name.startswith(page.stem + "_")]
    assert not foreign, f"{page.name} shows another run's figures: {foreign}"


def test_the_documented_pipeline_config_reads_as_the_defaults():
    """The YAML configuration docs/usage.md shows reads back (unknown keys would be refused),
    and its stage sections hold the pipeline's defaults, the recommended segment chain."""
    from skysift.config import PipelineConfig

    blocks = re.findall(
        r"```yaml\n(.*?)```", (ROOT / "docs" / "usage.md").read_text(encoding="utf-8"), re.S
    )
    shown = [PipelineConfig.from_yaml(block) for block in blocks if "segment:" in block]
    assert shown, "docs/usage.md no longer shows the pipeline's YAML configuration"
    defaults = PipelineConfig()
    for config in shown:
        for stage in ("localize", "classify", "shreds", "segment"):
            assert getattr(config, stage) == getattr(defaults, stage), stage
