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

__all__ = [
    "KNOWN_STAGES",
    "SEGMENT_CHAINS",
    "PipelineConfig",
    "segment_config",
    "with_segmenter",
]

#: Stages in pipeline order. A stage whose model is not shipped is skipped with a message.
KNOWN_STAGES = ("localize", "classify", "shreds", "segment")
#: What the segment stage's other options start from (the ``chain`` key of its YAML section):
#: the chain that measured best (:meth:`SegmentConfig.recommended`), or the Mask R-CNN alone
#: with its own star/galaxy call (``SegmentConfig()``, the ``segmenter`` model).
SEGMENT_CHAINS = ("recommended", "detector")
#: The segment options that make up its chain of networks (the rest set tiles, thresholds
#: and the PSF).
CHAIN_OPTIONS = ("model", "second_look", "star_fraction", "shreds", "mask_refiner", "colour_typer")


def segment_config(chain: str = "recommended", **options) -> SegmentConfig:
    """The segment stage's options: ``chain`` (:data:`SEGMENT_CHAINS`), then ``options``.

    Parameters
    ----------
    chain : {"recommended", "detector"}
        ``"recommended"`` starts from :meth:`SegmentConfig.recommended` (the detector, two
        star/galaxy looks, the shred classifier, the mask refiner and the colour typer);
        ``"detector"`` from ``SegmentConfig()``, the Mask R-CNN alone.
    **options
        Any :class:`SegmentConfig` option; each replaces the chain's.

    Returns
    -------
    SegmentConfig

    Examples
    --------
    >>> segment_config(star_fraction=0.6).second_look
    ('second_look_reject', 'second_look_reject_refined')
    >>> segment_config("detector", model="segmenter_psf").second_look is None
    True
    """
    if chain == "recommended":
        return SegmentConfig.recommended(**options)
    if chain == "detector":
        return SegmentConfig(**options)
    raise InvalidParameterError(
        f"segment: unknown chain {chain!r}; choose from {list(SEGMENT_CHAINS)}"
    )


def with_segmenter(segment: SegmentConfig, segmenter: str) -> SegmentConfig:
    """``segment`` with another chain of networks, its other options kept.

    Parameters
    ----------
    segment : SegmentConfig
    segmenter : str
        ``"recommended"`` (:meth:`SegmentConfig.recommended`'s networks), or the name of a
        shipped segmenter model to run alone, with its own star/galaxy call.

    Returns
    -------
    SegmentConfig
        A copy whose :data:`CHAIN_OPTIONS` are the chain's; tiles, thresholds and the PSF
        FWHM stay ``segment``'s.
    """
    if segmenter == "recommended":
        chain = segment_config()
    else:
        chain = segment_config("detector", model=segmenter)
    return dataclasses.replace(segment, **{key: getattr(chain, key) for key in CHAIN_OPTIONS})


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
        Segmenter options (the models of its chain, tile overlap, score and mask
        thresholds). The default is :meth:`SegmentConfig.recommended`; in YAML, the
        section's options replace that chain's, or those of the detector alone with
        ``chain: detector`` (:func:`segment_config`).
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
    segment: SegmentConfig = field(default_factory=SegmentConfig.recommended)
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
        """Build from plain data, refusing unknown keys at every level.

        A ``segment`` section's options replace those of the chain its ``chain`` key names
        (default ``"recommended"``; :func:`segment_config`). A written config names every
        option, so it reads back as the same chain.
        """
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
                if name == "segment":
                    _check_keys(options, stage_cls, name, also=("chain",))
                    data[name] = segment_config(options.pop("chain", "recommended"), **options)
                    continue
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


def _check_keys(data: dict, cls, where: str, *, also: tuple[str, ...] = ()) -> None:
    allowed = {f.name for f in dataclasses.fields(cls)} | set(also)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidParameterError(
            f"{where}: unknown option(s) {unknown}; allowed: {sorted(allowed)}"
        )
