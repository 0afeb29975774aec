"""Pipeline configuration: frozen dataclasses per stage, one YAML round trip.

>>> from skysift.config import PipelineConfig
>>> config = PipelineConfig.from_yaml("stages: [localize]\\nlocalize: {threshold: 0.25}")
>>> config.localize.threshold
0.25
>>> PipelineConfig.from_yaml(config.to_yaml()) == config
True

Unknown keys are errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from skysift.errors import InvalidParameterError
from skysift.io import CATALOG_FORMATS
from skysift.localizer import LocalizeConfig
from skysift.segment import SegmentConfig
from skysift.shreds import ShredsConfig
from skysift.stargalaxy import ClassifyConfig

__all__ = ["KNOWN_STAGES", "PipelineConfig"]

#: Stages in pipeline order. A stage whose model is not shipped is skipped with a message.
KNOWN_STAGES = ("localize", "classify", "shreds", "segment")


@dataclass(frozen=True)
class PipelineConfig:
    """What :class:`skysift.Pipeline` runs and writes.

    Attributes
    ----------
    stages : tuple of str
        Stages to run, from :data:`KNOWN_STAGES`.
    localize : LocalizeConfig
        Localizer options.
    classify : ClassifyConfig
        Star/galaxy classifier options (detector geometry for the position input).
    shreds : ShredsConfig
        Shred classifier options (the model, the PSF FWHM).
    segment : SegmentConfig
        Segmenter options (tile overlap, score and mask thresholds).
    formats : tuple of str
        Catalog formats written by :meth:`Result.write` (fits, ecsv, csv, parquet).
    regions : bool
        Also write a DS9 region file.
    probability_map : bool
        Also write the localizer's probability map (FITS, with the image WCS).
    overlay : bool
        Also write the overlay PNG (the image, asinh/zscale, sources marked by class).
    report : bool
        Also write the self-contained HTML report (overlay, histograms, sortable table).
    segmentation_map : bool
        Write the segmentation map (FITS with the image WCS, labels = catalog ids) when the
        segment stage ran.
    """

    stages: tuple[str, ...] = ("localize", "classify")
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)
    classify: ClassifyConfig = field(default_factory=ClassifyConfig)
    shreds: ShredsConfig = field(default_factory=ShredsConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    formats: tuple[str, ...] = ("ecsv",)
    regions: bool = True
    probability_map: bool = False
    overlay: bool = False
    report: bool = False
    segmentation_map: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "formats", tuple(self.formats))
        unknown = [s for s in self.stages if s not in KNOWN_STAGES]
        if unknown:
            raise InvalidParameterError(
                f"unknown stage(s) {unknown}; stages are {list(KNOWN_STAGES)}"
            )
        if not self.stages or self.stages[0] != "localize":
            raise InvalidParameterError(
                f"stages must start with 'localize' (every other stage works on its sources); "
                f"got {list(self.stages)}"
            )
        bad = [f for f in self.formats if f not in CATALOG_FORMATS]
        if bad:
            raise InvalidParameterError(
                f"unknown catalog format(s) {bad}; choose from {sorted(CATALOG_FORMATS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, numbers, strings)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> PipelineConfig:
        """Build from plain data, refusing unknown keys at every level."""
        data = dict(data or {})
        _check_keys(data, cls, "pipeline config")
        for name, stage_cls in (
            ("localize", LocalizeConfig),
            ("classify", ClassifyConfig),
            ("shreds", ShredsConfig),
            ("segment", SegmentConfig),
        ):
            if name in data:
                options = dict(data[name] or {})
                _check_keys(options, stage_cls, name)
                data[name] = stage_cls(**options)
        return cls(**data)

    def to_yaml(self) -> str:
        """YAML text of the config."""
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> PipelineConfig:
        """Parse YAML text (``PipelineConfig.from_yaml(path.read_text())``)."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidParameterError(f"configuration is not valid YAML: {exc}") from exc
        if data is not None and not isinstance(data, dict):
            raise InvalidParameterError("configuration YAML must be a mapping of options")
        return cls.from_dict(data)

    def with_overrides(self, **overrides) -> PipelineConfig:
        """A copy with top-level fields replaced (``None`` values are ignored)."""
        changes = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(self, **changes)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _check_keys(data: dict, cls, where: str) -> None:
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidParameterError(
            f"{where}: unknown option(s) {unknown}; allowed: {sorted(allowed)}"
        )
