"""The ``skysift`` command line: a thin layer over the Python API.

Each command parses its options, builds the library objects, calls them, and reports. Errors
skysift raises on purpose are shown as one line (no traceback) with exit code 2.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import typer

app = typer.Typer(
    name="skysift",
    help=(
        "Find, localize, classify and segment sources in astronomical images with neural "
        "networks trained on GalSim simulations, and compare them with SEP and photutils."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Options several commands take.
WEIGHTS_OUT = typer.Option(
    None, help="Write weights + card here (default: the package's weights folder)."
)
QUIET = typer.Option(False, "--quiet", "-q")
FIELD_WORKERS = typer.Option(
    2, help="Processes simulating missing fields (the fields do not depend on it)."
)
FIELDS_DIR = typer.Option(Path("data"), help="Where simulated fields are cached.")
SEGMENTER = typer.Option(
    None,
    "--segmenter",
    help="The segment stage's networks: 'recommended' (the default: the Mask R-CNN, two "
    "star/galaxy looks, the shred classifier, the mask refiner and the colour typer) or a "
    "shipped segmenter model run alone (e.g. 'segmenter').",
)
SEGMENT_STAR_FRACTION = typer.Option(
    None,
    "--star-fraction",
    help="Stars among the stars and galaxies of these images, for the segment stage's "
    "star/galaxy looks (the recommended chain assumes 0.27, a high-latitude field).",
)
PSF_FWHM = typer.Option(
    None,
    "--psf-fwhm",
    help="PSF FWHM in pixels for the shreds and segment stages (default: the header's "
    "SEEING over the pixel scale, else measured on the image's stars).",
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debugging details."),
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@app.command()
def simulate(
    out: Path = typer.Option(
        Path("skysift-field"),
        "--out",
        "-o",
        help="Directory for the FITS images, truth, masks and preview.",
    ),
    survey: str = typer.Option("meerlicht", help="Survey preset: meerlicht, decals or sdss."),
    size: int = typer.Option(1024, help="Image side in pixels."),
    density: str = typer.Option(
        "30",
        help="Sources per arcmin^2 brighter than the 5-sigma depth, or sparse (3), "
        "medium (40), crowded (150), cluster (250).",
    ),
    seed: int = typer.Option(2_000_000, help="Random seed; see skysift.sim.seeds for ranges."),
    star_fraction: float = typer.Option(0.6, help="Fraction of detectable sources that are stars."),
    central_galaxy: str = typer.Option(
        None, help="Put a bright galaxy at the centre: elliptical, spiral, disk, clumpy, compact."
    ),
    cluster_fraction: float = typer.Option(
        0.0, help="Fraction of stars in a central Plummer cluster (globular-cluster core)."
    ),
    psf_fwhm: float = typer.Option(None, help="PSF FWHM at the optical centre in arcsec."),
    psf_variation: bool = typer.Option(
        True, help="PSF size and elongation grow towards the edges (--no-psf-variation: fixed)."
    ),
    artifacts: bool = typer.Option(
        True,
        help="Cosmic rays, trails, hot pixels, bad columns, spikes, bleeding "
        "(--no-artifacts: none).",
    ),
    noise: bool = typer.Option(True, help="Poisson and read noise (--no-noise: expected image)."),
    name: str = typer.Option("field", help="Prefix of the output file names."),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Simulate a field with GalSim and write it with its complete truth.

    Writes NAME_<band>.fits (ADU, TAN WCS), NAME_truth.ecsv, NAME_artifacts.ecsv,
    NAME_masks.fits (footprints, ASID-L target, artifact masks), NAME_config.json and
    NAME_preview.png into --out. The same options and seed always give the same pixels.

    Example: skysift simulate --survey decals --density 30 --size 1024 --seed 7 --out field/
    """
    from skysift.sim import FieldConfig, simulate_field

    def run() -> None:
        density_value: float | str = float(density) if _is_number(density) else density
        config = FieldConfig(
            survey=survey,
            size=size,
            density=density_value,
            seed=seed,
            star_fraction=star_fraction,
            central_galaxy=central_galaxy,
            cluster_fraction=cluster_fraction,
            psf_fwhm=psf_fwhm,
            **({} if psf_variation else {"psf_size_growth": 0.0, "psf_ellipticity_edge": 0.0}),
            noise=noise,
        )
        if not artifacts:
            config = config.without_artifacts()
        start = time.perf_counter()
        field = simulate_field(config, progress=not quiet)
        paths = field.write(out, name=name, overwrite=overwrite)
        if not quiet:
            info = field.info
            typer.echo(
                f"Simulated {config.survey} {size}x{size} seed {seed} in "
                f"{time.perf_counter() - start:.1f} s: {info['n_stars']} stars, "
                f"{info['n_galaxies']} galaxies, {info['n_shreds']} clumps (shreds), "
                f'{info["n_artifacts"]} artifacts; PSF FWHM {info["psf_fwhm"]:.2f}", '
                f"5-sigma depth {info['depth_5sigma']:.2f} mag"
            )
            for kind, path in paths.items():
                typer.echo(f"  {kind:<10} {path}")

    _guarded(run)


@app.command("run")
def run_command(
    images: list[Path] = typer.Argument(..., help="FITS file(s); several files are bands."),
    out: Path = typer.Option(Path("skysift-out"), "--out", "-o", help="Output directory."),
    stages: str = typer.Option(
        None, help="Comma-separated stages (localize, classify, shreds, segment)."
    ),
    format: str = typer.Option(
        None, "--format", help="Catalog formats, comma-separated: fits, ecsv, csv, parquet."
    ),
    regions: bool = typer.Option(None, help="Write a DS9 region file (default on)."),
    probability_map: bool = typer.Option(None, help="Write the localizer probability map."),
    overlay: bool = typer.Option(None, help="Write an overlay PNG (sources on the image)."),
    report: bool = typer.Option(None, help="Write the self-contained HTML report."),
    segmap: bool = typer.Option(
        None,
        "--segmap/--no-segmap",
        help="Write the segmentation map (FITS, labels = catalog ids) when the segment stage "
        "runs (default on).",
    ),
    config: Path = typer.Option(None, help="YAML configuration file; options override it."),
    hdu: str = typer.Option(None, help="HDU name or number (default: first image HDU)."),
    mask: Path = typer.Option(None, help="FITS mask: non-zero pixels are ignored."),
    weight: Path = typer.Option(None, help="FITS weight map: pixels with weight <= 0 ignored."),
    name: str = typer.Option(None, help="Output file prefix (default: the image file stem)."),
    segmenter: str = SEGMENTER,
    star_fraction: float = SEGMENT_STAR_FRACTION,
    psf_fwhm: float = PSF_FWHM,
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Run the skysift pipeline on an image and write the catalog, regions and config.

    Stages that have no shipped model yet are skipped with a message. The effective
    configuration is written next to the catalog (NAME_config.yaml) and can be passed back
    with --config.

    Example: skysift run frame.fits --out results/ --format fits,ecsv --probability-map

    Segmenting g, r, z bands: skysift run g.fits r.fits z.fits --stages
    localize,classify,segment --psf-fwhm 4.9
    """
    from skysift.io import read_image
    from skysift.pipeline import Pipeline

    def run() -> None:
        base = _stage_options(
            _pipeline_config(config),
            segmenter=segmenter,
            star_fraction=star_fraction,
            psf_fwhm=psf_fwhm,
        )
        effective = base.with_overrides(
            stages=tuple(stages.split(",")) if stages else None,
            formats=tuple(format.split(",")) if format else None,
            regions=regions,
            probability_map=probability_map,
            overlay=overlay,
            report=report,
            segmentation_map=segmap,
        )
        hdu_value = int(hdu) if hdu is not None and hdu.isdigit() else hdu
        image = read_image(images, hdu=hdu_value, mask=mask, weight=weight)
        result = Pipeline(effective)(image, progress=not quiet)
        paths = result.write(out, name=name or images[0].name.split(".")[0], overwrite=overwrite)
        if not quiet:
            typer.echo(f"{len(result.catalog)} sources in {sum(result.timings.values()):.1f} s")
            for stage, reason in result.skipped.items():
                typer.echo(f"  skipped {stage}: {reason}")
            for kind, path in paths.items():
                typer.echo(f"  {kind:<16} {path}")

    _guarded(run)


@app.command()
def batch(
    pattern: list[str] = typer.Argument(..., help="Image files or glob patterns ('dir/*.fits')."),
    out: Path = typer.Option(..., "--out", "-o", help="Output directory (resumable)."),
    scheduler: str = typer.Option(
        None, help="dask.distributed scheduler address; default: a LocalCluster on this machine."
    ),
    workers: int = typer.Option(2, help="Worker processes of the local cluster."),
    config: Path = typer.Option(None, help="YAML pipeline configuration."),
    bands: str = typer.Option(
        None,
        help="Bands in one file each, comma-separated (e.g. g,r,z): each pattern holds "
        "{band} where the band's name stands ('tiles/*_{band}.fits'), and each image is "
        "its bands' files read together.",
    ),
    segmenter: str = SEGMENTER,
    star_fraction: float = SEGMENT_STAR_FRACTION,
    psf_fwhm: float = PSF_FWHM,
    quiet: bool = QUIET,
) -> None:
    """Run the pipeline on many images with Dask; re-running skips finished images.

    Writes OUT/<image>/ (catalog, regions, config per image), OUT/catalogs/ (one partitioned
    Parquet dataset of all catalogs) and OUT/manifest.json (status, timings, counts, errors).
    Exits with code 1 if any image failed; a bad file fails only itself.

    Example, g, r, z in one file each, segmented: skysift batch 'tiles/*_{band}.fits'
    --bands g,r,z --out out/ --config segment.yaml
    """
    import glob

    from skysift.batch import band_groups, run_batch

    def run() -> None:
        _quiet_dask()
        if bands:
            paths = band_groups(pattern, bands.split(","))
        else:
            paths = sorted({p for item in pattern for p in (glob.glob(item) or [item])})
        base = _stage_options(
            _pipeline_config(config),
            segmenter=segmenter,
            star_fraction=star_fraction,
            psf_fwhm=psf_fwhm,
        )
        summary = run_batch(
            paths, out, config=base, scheduler=scheduler, workers=workers, progress=not quiet
        )
        typer.echo(str(summary))
        if not summary.ok:
            raise typer.Exit(code=1)

    _guarded(run)


def _quiet_dask() -> None:
    """Keep Dask's scheduler, nanny and connection messages (INFO, about 25 lines a run) off
    the console unless ``--verbose`` asked for debugging details. ``distributed`` sets its
    loggers when it is imported, so this comes after the import (dask/distributed#7527)."""
    import distributed  # noqa: F401  (configures its loggers on import)

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        logging.getLogger("distributed").setLevel(logging.WARNING)


def _pipeline_config(path: Path | None):
    """The pipeline configuration in a YAML file, or the default one."""
    from skysift.config import PipelineConfig

    return PipelineConfig.from_yaml(path.read_text()) if path else PipelineConfig()


def _stage_options(config, *, segmenter: str | None, star_fraction, psf_fwhm):
    """``config`` with the command line's segment chain, star fraction and PSF FWHM."""
    import dataclasses

    from skysift.config import with_segmenter

    segment, shreds = config.segment, config.shreds
    if segmenter is not None:
        from skysift.errors import InvalidParameterError
        from skysift.models.registry import list_models

        choices = ["recommended"] + [
            card["name"] for card in list_models() if card["architecture"]["kind"] == "segmenter"
        ]
        if segmenter not in choices:
            raise InvalidParameterError(
                f"--segmenter {segmenter!r} is neither 'recommended' nor a shipped segmenter; "
                f"choose from {choices}"
            )
        segment = with_segmenter(segment, segmenter)
    if star_fraction is not None:
        segment = dataclasses.replace(segment, star_fraction=star_fraction)
    if psf_fwhm is not None:
        segment = dataclasses.replace(segment, psf_fwhm=psf_fwhm)
        shreds = dataclasses.replace(shreds, psf_fwhm=psf_fwhm)
    return dataclasses.replace(config, segment=segment, shreds=shreds)


@app.command()
def localize(
    images: list[Path] = typer.Argument(..., help="FITS file(s); several files are bands."),
    out: Path = typer.Option(..., "--out", "-o", help="Catalog file (.ecsv, .fits or .csv)."),
    hdu: str = typer.Option(None, help="HDU name or number (default: first image HDU)."),
    mask: Path = typer.Option(None, help="FITS mask: non-zero pixels are ignored."),
    weight: Path = typer.Option(None, help="FITS weight map: pixels with weight <= 0 ignored."),
    probability_map: Path = typer.Option(
        None, "--probability-map", help="Also write the U-Net probability map to this FITS file."
    ),
    threshold: float = typer.Option(None, help="LoG threshold (default: the model card's)."),
    augment: str = typer.Option(
        None,
        help="Test-time augmentation: 'flips' (4 passes) or 'd4' (8 passes, flips and "
        "rotations); slower, more accurate (docs/models.md).",
    ),
    overwrite: bool = typer.Option(False, help="Replace existing output files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
) -> None:
    """Localize sources with the shipped U-Net + Laplacian-of-Gaussian localizer.

    Writes one row per source: id, x, y (0-based pixels), x_peak, y_peak, ra, dec (with a
    WCS), score (probability peak), flux, flux_err, snr (local-background aperture) and flags.

    Example: skysift localize frame.fits --out frame_sources.ecsv
    """
    from skysift.io import read_image
    from skysift.localizer import LocalizeConfig, Localizer

    def run() -> None:
        for target in (out, probability_map):
            if target is not None and target.exists() and not overwrite:
                raise FileExistsError(f"{target} exists; pass --overwrite to replace it")
        hdu_value = int(hdu) if hdu is not None and hdu.isdigit() else hdu
        config = LocalizeConfig(threshold=threshold, augment=augment)  # bad options first
        image = read_image(images, hdu=hdu_value, mask=mask, weight=weight)
        start = time.perf_counter()
        localizer = Localizer(config)
        catalog, probability = localizer(image, progress=not quiet)
        _write_table(catalog, out)
        if probability_map is not None:
            _write_map(probability, image, probability_map)
        if not quiet:
            typer.echo(f"{len(catalog)} sources in {time.perf_counter() - start:.1f} s -> {out}")

    _guarded(run)


@app.command()
def demo(
    out: Path = typer.Option(Path("skysift-demo"), "--out", "-o", help="Output directory."),
    size: int = typer.Option(1024, help="Side of the simulated field in pixels."),
    density: float = typer.Option(60.0, help="Sources per arcmin^2 above the 5-sigma depth."),
    seed: int = typer.Option(2_000_000, help="Seed of the simulated field."),
    overwrite: bool = typer.Option(True, help="Replace earlier demo outputs."),
    quiet: bool = QUIET,
) -> None:
    """Simulate a MeerLICHT-like field, localize its sources, and score them against the truth.

    Writes the field (FITS, truth, masks), the skysift catalog (ECSV), the probability map and
    an overlay PNG into --out, and prints precision/recall/F1 for skysift and for SEP run on
    the same image.
    """
    from skysift.demo import run_demo

    def run() -> None:
        summary = run_demo(
            out, size=size, density=density, seed=seed, overwrite=overwrite, progress=not quiet
        )
        if not quiet:
            typer.echo(summary)

    _guarded(run)


@app.command()
def models() -> None:
    """List the shipped models with their cards (task, architecture, metrics)."""
    from skysift.models.registry import list_models

    cards = list_models()
    if not cards:
        typer.echo("no shipped models")
    for card in cards:
        architecture = card["architecture"]
        typer.echo(f"{card['name']}: {card['task']}")
        typer.echo(
            f"  architecture {architecture['kind']} {architecture['config']}, "
            f"{card.get('parameters', '?')} parameters, {card.get('dtype', '')}"
        )
        for key, value in card.get("metrics", {}).items():
            typer.echo(f"  {key}: {_brief(value)}")
        typer.echo(f"  reproduce: {card['training']['command']}")


def _brief(value) -> str:
    """A card value on one short line: floats to 4 digits, long lists counted."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_brief(v)}" for k, v in value.items())
    if isinstance(value, list) and len(value) > 4:
        return f"[{len(value)} entries; see the card]"
    return str(value)


train_app = typer.Typer(help="Train skysift's networks on simulated fields (CPU).")

app.add_typer(train_app, name="train")


@train_app.command("localizer")
def train_localizer_command(
    steps: int = typer.Option(3000, help="Optimizer steps (batches of 8 crops of 256x256)."),
    seed: int = typer.Option(0, help="Seed of the network initialization and crop sampling."),
    n_train_fields: int = typer.Option(400, help="Simulated 512x512 training fields."),
    target: str = typer.Option(
        "disc",
        help="Training target: 'disc' (the paper's 13-pixel disc) or 'peak' (a Gaussian of "
        "1 px at each source: close pairs keep two maxima).",
    ),
    data_dir: Path = FIELDS_DIR,
    run_dir: Path = typer.Option(Path("runs/localizer"), help="Checkpoints and the log."),
    out: Path = WEIGHTS_OUT,
    quiet: bool = QUIET,
) -> None:
    """Simulate the training/validation fields, train the localizer, tune LoG, write weights.

    Every stage resumes: simulated fields already on disk and the last checkpoint are reused.
    """
    from skysift.train.localizer import (
        LocalizerTrainingConfig,
        finish_localizer,
        prepare_data,
    )
    from skysift.train.localizer import train_localizer as train

    def run() -> None:
        config = LocalizerTrainingConfig(
            steps=steps,
            seed=seed,
            n_train_fields=n_train_fields,
            target=target,
            # disc targets come with the fields; peaked ones are drawn from the stored truth
            train_dir=str(
                data_dir / ("localizer_train" if target == "disc" else "localizer_train_truth")
            ),
            val_dir=str(data_dir / "localizer_val"),
            run_dir=str(run_dir),
        )
        prepare_data(config, progress=not quiet)
        best = train(config, progress=not quiet)
        weights = finish_localizer(
            config,
            best,
            out_dir=out,
            test_dir=str(data_dir / "localizer_test"),
            progress=not quiet,
        )
        typer.echo(f"wrote {weights}")

    _guarded(run)


def _role_dirs(data_dir: Path, stem: str) -> dict[str, str]:
    """``train_dir``, ``val_dir`` and ``test_dir`` of a training config: ``<stem>_<role>``
    folders of simulated fields in ``data_dir``."""
    roles = {"train_dir": "train", "val_dir": "validation", "test_dir": "test"}
    return {key: str(data_dir / f"{stem}_{role}") for key, role in roles.items()}


def _train_then_finish(config, train, finish, *, quiet: bool, **finish_options) -> None:
    """``train(config)``, then ``finish(config, best_weights, **finish_options)``: measure
    held out and write weights + card; echoes where they went."""
    best = train(config, progress=not quiet)
    weights = finish(config, best, progress=not quiet, **finish_options)
    typer.echo(f"wrote {weights}")


@train_app.command("segmenter")
def train_segmenter_command(
    seed: int = typer.Option(0, help="Seed of the network initialization and batch order."),
    n_train: int = typer.Option(1500, help="Simulated 256x256 training images."),
    n_test: int = typer.Option(128, help="Held-out test-seed images for the card."),
    threads: int = typer.Option(2, help="CPU threads for training."),
    masks: str = typer.Option(
        "truth",
        help="Training annotations: 'truth' (every source's simulated footprint) or 'otsu' "
        "(the paper's automatic annotation: the central galaxy's Otsu mask only).",
    ),
    box_only: bool = typer.Option(
        False,
        "--box-only",
        help="Train the box-only Faster R-CNN variant (same trunk, anchors and box head, no "
        "mask head) as 'segmenter_boxes', for comparing the R-CNN family.",
    ),
    schedule: str = typer.Option(
        "standard",
        help="Training schedule: 'standard' (3,000 steps, the shipped model's), 'long' "
        "(5,100 steps: 1,800 more at 3e-4 and a longer last stage) or 'finetune' (1,500 "
        "steps continuing --init-from).",
    ),
    typical_fields: int = typer.Option(
        0,
        help="Add this many of Burke et al.'s typical DECaLS fields (30 galaxies + 5 stars "
        "/arcmin^2, training seeds) to the training images.",
    ),
    psf_channel: bool = typer.Option(
        False,
        "--psf-channel",
        help="Give the network the PSF FWHM as one more input channel (experimental: "
        "the Segmenter runs such a model given the FWHM; see docs/models.md, session 11). "
        "The model is called 'segmenter_psf' unless --name says otherwise.",
    ),
    widths: str = typer.Option(
        None,
        help="Trunk widths, stem and four stages, comma-separated (default 24,32,64,128,192).",
    ),
    blocks: str = typer.Option(
        None, help="Residual blocks per trunk stage, four, comma-separated (default 1,2,2,1)."
    ),
    fpn_channels: int = typer.Option(
        None, help="Feature-pyramid and mask-head channels (default 64)."
    ),
    init_from: str = typer.Option(
        None,
        help="Start from this packaged model (e.g. 'segmenter'), or the card of one written "
        "by --out (a path ending in .json), instead of random weights; needs --schedule "
        "finetune. A PSF channel it lacks starts with zero weights.",
    ),
    clumps_in_footprints: bool = typer.Option(
        False,
        "--clumps-in-footprints",
        help="Simulate the images with star-forming clumps' pixels in their parent galaxy's "
        "mask (otherwise a clump beyond its parent's isophote lies on sky); use another "
        "--data-dir than the images simulated without.",
    ),
    burke_masks: bool = typer.Option(
        False,
        "--burke-masks",
        help="Simulate the images with truth masks by Burke et al.'s rule (each source's "
        "light above 0.5 % (stars) or 8 % (galaxies) of its own noiseless peak, smoothed) "
        "instead of the 2-sigma isophote; use another --data-dir than the images simulated "
        "without.",
    ),
    name: str = typer.Option(
        None,
        help="Name of the model written (default: 'segmenter', 'segmenter_boxes', or either "
        "with '_psf' for --psf-channel); the weights do not depend on it.",
    ),
    workers: int = typer.Option(
        2, help="Processes simulating missing images (the images do not depend on it)."
    ),
    data_dir: Path = typer.Option(Path("data"), help="Where simulated images are cached."),
    run_dir: Path = typer.Option(None, help="Checkpoints and the log (default runs/<name>)."),
    out: Path = WEIGHTS_OUT,
    quiet: bool = QUIET,
) -> None:
    """Simulate images, train the Mask R-CNN segmenter in stages, test it, write weights.

    Stages: all layers from scratch, then heads, heads + deeper trunk, everything, with
    falling learning rates (the Mask Galaxy schedule). Every stage resumes.
    """
    from skysift.errors import InvalidParameterError
    from skysift.models.segmenter import SegmenterConfig
    from skysift.train.segmenter import (
        SCHEDULES,
        SegmenterTrainingConfig,
        checked_model_name,
        default_segmenter_name,
        finish_segmenter,
        prepare_data,
        train_segmenter,
        trunk_architecture,
    )

    def run() -> None:
        if schedule not in SCHEDULES:
            raise InvalidParameterError(
                f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)}"
            )
        if typical_fields < 0:
            raise InvalidParameterError(f"typical-fields must be >= 0, got {typical_fields}")
        model_name = default_segmenter_name(box_only=box_only, psf_channel=psf_channel)
        if name is not None:
            model_name = checked_model_name(name)
        config = SegmenterTrainingConfig(
            name=model_name,
            architecture=SegmenterConfig(
                masks=not box_only,
                psf_channel=psf_channel,
                **trunk_architecture(widths=widths, blocks=blocks, fpn_channels=fpn_channels),
            ),
            stages=SCHEDULES[schedule],
            seed=seed,
            n_train=n_train,
            n_typical=typical_fields,
            typical_dir=str(data_dir / "segmenter_train_typical"),
            threads=threads,
            masks=masks,
            init_from=init_from,
            clumps_in_footprints=clumps_in_footprints,
            burke_masks=burke_masks,
            train_dir=str(data_dir / "segmenter_train"),
            val_dir=str(data_dir / "segmenter_val"),
            run_dir=str(run_dir or Path("runs") / model_name),
        )
        prepare_data(config, progress=not quiet, workers=workers)
        _train_then_finish(
            config,
            train_segmenter,
            finish_segmenter,
            quiet=quiet,
            out_dir=out,
            test_dir=str(data_dir / "segmenter_test"),
            n_test=n_test,
        )

    _guarded(run)


@train_app.command("morphology")
def train_morphology_command(
    seed: int = typer.Option(0, help="Seed of the network initialization and batch order."),
    with_stars: bool = typer.Option(
        False,
        "--with-stars",
        help="Type every instance (star, elliptical, spiral, other), not only galaxies.",
    ),
    n_train: int = typer.Option(
        None, help="Simulated 256x256 training images (default 3000; 1200 with stars)."
    ),
    n_test: int = typer.Option(300, help="Held-out test-seed images for the card."),
    epochs: int = typer.Option(
        None, help="Passes over the training stamps (default 30; 12 with stars)."
    ),
    threads: int = typer.Option(2, help="CPU threads for training."),
    workers: int = typer.Option(2, help="Processes simulating the images."),
    data_dir: Path = typer.Option(Path("data"), help="Where simulated stamps are cached."),
    run_dir: Path = typer.Option(None, help="Checkpoints and the log (default runs/<data>)."),
    out: Path = WEIGHTS_OUT,
    quiet: bool = QUIET,
) -> None:
    """Simulate stamps, train the type network, test it, write weights.

    The network re-types the segmenter's galaxy instances (elliptical, spiral, other), or
    with ``--with-stars`` every instance (star, elliptical, spiral, other: stamps of every
    star and galaxy with S/N >= 10 of the segmenter's kinds of images). Every stage resumes:
    simulated images and the last checkpoint are reused.
    """
    from skysift.train.morphology import (
        MorphologyTrainingConfig,
        finish_morphology,
        prepare_data,
        train_morphology,
    )

    def run() -> None:
        stem = "sourcetype" if with_stars else "morphology"
        options = (
            {"n_train_images": 1200, "n_val_images": 200, "epochs": 12, "batch_size": 128}
            if with_stars
            else {}
        )
        options["min_snr"] = 10.0 if with_stars else 30.0
        if n_train is not None:
            options["n_train_images"] = n_train
        if epochs is not None:
            options["epochs"] = epochs
        config = MorphologyTrainingConfig(
            seed=seed,
            with_stars=with_stars,
            threads=threads,
            train_dir=str(data_dir / f"{stem}_train"),
            val_dir=str(data_dir / f"{stem}_val"),
            run_dir=str(run_dir or Path("runs") / stem),
            **options,
        )
        prepare_data(config, workers=workers, progress=not quiet)
        _train_then_finish(
            config,
            lambda c, progress: train_morphology(c, progress=progress) / "best.safetensors",
            finish_morphology,
            quiet=quiet,
            out_dir=out,
            test_dir=str(data_dir / f"{stem}_test"),
            n_test=n_test,
            segmenter_test_dir=str(data_dir / "segmenter_test"),
        )

    _guarded(run)


@train_app.command("second-look")
def train_second_look_command(
    seed: int = typer.Option(0, help="Seed of the network initialization and batch order."),
    segmenter: str = typer.Option(
        "segmenter_psf",
        help="Segmenter whose catalog instances it learns to correct: a shipped model's name, "
        "or the card of one written by --out (a path ending in .json).",
    ),
    reject: bool = typer.Option(
        False,
        "--reject",
        help="Three classes: galaxy, star, and false (an instance that matches no source); a "
        "false instance's score drops.",
    ),
    cutout: str = typer.Option(
        "native",
        help="How each instance is cut: 'native' (32x32 at the image's pixel scale), "
        "'zoomed' (zoomed out by a whole number to hold it whole, block means) or 'both' "
        "(the two stacked as channels); another than native is added to the model's name.",
    ),
    epochs: int = typer.Option(40, help="Passes over the training stamps."),
    schedule: str = typer.Option(
        "constant", help="Learning rate: 'constant', or 'cosine' (annealed to zero)."
    ),
    n_images: int = typer.Option(
        1500,
        "--images",
        help="Segmenter training images (of 1,500) whose instances are cut into training "
        "stamps, besides the typical fields.",
    ),
    typical_fields: int = typer.Option(
        300,
        help="Burke et al.'s typical fields (training seeds, simulated when missing) whose "
        "instances are cut into training stamps too.",
    ),
    threads: int = typer.Option(2, help="CPU threads."),
    clumps_in_footprints: bool = typer.Option(
        False,
        "--clumps-in-footprints",
        help="The segmenter's images with star-forming clumps' pixels in their parent's mask "
        "(as `skysift train segmenter --clumps-in-footprints`); use that run's --data-dir.",
    ),
    burke_masks: bool = typer.Option(
        False,
        "--burke-masks",
        help="The segmenter's images with truth masks by Burke et al.'s rule (as `skysift "
        "train segmenter --burke-masks`); use that run's --data-dir.",
    ),
    paint_by: str = typer.Option(
        "scores",
        help="Order the stamps' catalogs are painted in: 'scores' (galaxy-typed; how the "
        "shipped looks were cut) or 'detection_scores' (the Segmenter's order since session "
        "23).",
    ),
    augment: str = typer.Option(
        None,
        help="Run the segmenter in 4 ('flips') or 8 ('d4') views fused, as "
        "SegmentConfig(augment=): the look learns that detector's mistakes.",
    ),
    mask_refiner: str = typer.Option(
        None,
        help="A mask refiner (e.g. 'mask_refiner') that draws the small instances' masks "
        "again before they are cut: the look learns on its masks, and the Segmenter refines "
        "before it looks.",
    ),
    filters: int = typer.Option(
        32, help="Filters of each of the image branch's three convolutions (ASID-C's)."
    ),
    neighbours: bool = typer.Option(
        False,
        "--neighbours",
        help="Give each stamp a channel of the other detections' masks, so that light "
        "inside a neighbour's mask is not read as the instance's own.",
    ),
    mask_jitter: int = typer.Option(
        0,
        help="Erode or dilate each training stamp's mask channel by up to this many pixels, "
        "so that the look reads a source's extent from its pixels (docs/models.md, "
        "session 46).",
    ),
    name: str = typer.Option(
        None,
        help="Name of the model written (default: 'second_look' or 'second_look_reject', "
        "with '_<cutout>' for another cutout than native), e.g. to keep a look trained on "
        "another --segmenter beside the shipped ones; the weights do not depend on it.",
    ),
    workers: int = typer.Option(
        2, help="Processes simulating missing images (the images do not depend on it)."
    ),
    data_dir: Path = typer.Option(Path("data"), help="Where simulated images are cached."),
    run_dir: Path = typer.Option(
        None, help="Stamps, checkpoint and log (default runs/<model name>)."
    ),
    out: Path = WEIGHTS_OUT,
    quiet: bool = QUIET,
) -> None:
    """Train the segmenter's PSF-aware star/galaxy second look, test it, write weights.

    The model is ``second_look`` (star or galaxy), or with ``--reject`` ``second_look_reject``
    (star, galaxy, or false: a detection that matches no source).

    Simulates the segmenter's training, validation and test images if missing, runs the
    segmenter over ``--images`` of its training images and ``--typical-fields`` typical
    fields, cuts a stamp of each of its catalog instances (labelled by the truth source it
    matches, or false), trains on them, and scores Burke et al.'s figure with and without
    the second look on the held-out test images.
    """
    from skysift.errors import InvalidParameterError
    from skysift.train.second_look import (
        SecondLookTrainingConfig,
        finish_second_look,
        train_second_look,
    )
    from skysift.train.segmenter import SegmenterTrainingConfig, checked_model_name, prepare_data

    def run() -> None:
        if n_images < 0 or typical_fields < 0:
            raise InvalidParameterError(
                f"images and typical-fields must be >= 0, got {n_images} and {typical_fields}"
            )
        options = {"run_dir": str(run_dir)} if run_dir else {}
        if name is not None:
            options["name"] = checked_model_name(name)
        config = SecondLookTrainingConfig.named(
            reject=reject,
            cutout=cutout,
            segmenter=segmenter,
            seed=seed,
            epochs=epochs,
            schedule=schedule,
            n_images=(n_images, typical_fields),
            threads=threads,
            clumps_in_footprints=clumps_in_footprints,
            burke_masks=burke_masks,
            paint_by=paint_by,
            augment=augment,
            mask_refiner=mask_refiner,
            filters=filters,
            neighbours=neighbours,
            mask_jitter=mask_jitter,
            train_dirs=(
                str(data_dir / "segmenter_train"),
                str(data_dir / "segmenter_train_typical"),
            ),
            val_dir=str(data_dir / "segmenter_val"),
            **options,
        )
        images = SegmenterTrainingConfig(
            n_typical=config.n_images[1],
            train_dir=config.train_dirs[0],
            typical_dir=config.train_dirs[1],
            val_dir=config.val_dir,
            clumps_in_footprints=clumps_in_footprints,
            burke_masks=burke_masks,
        )
        prepare_data(images, progress=not quiet, workers=workers)
        _train_then_finish(
            config,
            train_second_look,
            finish_second_look,
            quiet=quiet,
            out_dir=out,
            test_dir=str(data_dir / "segmenter_test"),
            typical_dir=str(data_dir / "segmenter_typical_test"),
        )

    _guarded(run)


@train_app.command("shred")
def train_shred_command(
    seed: int = typer.Option(0, help="Seed of the network initialization and batch order."),
    epochs: int = typer.Option(20, help="Passes over the training samples."),
    threads: int = typer.Option(2, help="CPU threads for training."),
    workers: int = FIELD_WORKERS,
    data_dir: Path = FIELDS_DIR,
    run_dir: Path = typer.Option(Path("runs/shred"), help="Checkpoint, log and summary."),
    out: Path = WEIGHTS_OUT,
    quiet: bool = QUIET,
) -> None:
    """Train the shred classifier (Galaxy Shreds), test it, write weights.

    Simulates 240 training, 30 validation and 60 test DECaLS fields of 1024x1024 if missing
    (about 35 minutes on two processes), trains on both views of every source with S/N >= 5,
    moves the output to the validation fields' share of shreds and scores the test fields.
    """
    from skysift.train.shred import ShredTrainingConfig, finish_shred, prepare_data, train_shred

    def run() -> None:
        config = ShredTrainingConfig(
            seed=seed,
            epochs=epochs,
            threads=threads,
            workers=workers,
            train_dir=str(data_dir / "shred_train"),
            val_dir=str(data_dir / "shred_validation"),
            test_dir=str(data_dir / "shred_test"),
            run_dir=str(run_dir),
        )
        prepare_data(config, progress=not quiet)
        _train_then_finish(
            config,
            lambda c, progress: train_shred(c, progress=progress) / "best.safetensors",
            finish_shred,
            quiet=quiet,
            out_dir=out,
        )

    _guarded(run)


@train_app.command("mask-refiner")
def train_mask_refiner_command(
    seed: int = typer.Option(0, help="Seed of the network initialization and batch order."),
    segmenter: str = typer.Option(
        "segmenter_psf_typical",
        help="Segmenter whose detections are the stamps (a shipped name or a card's path).",
    ),
    epochs: int = typer.Option(10, help="Passes over the training stamps."),
    widths: str = typer.Option(
        "8,16,32,64", help="The U-Net's channels per level, comma-separated."
    ),
    noise_max: float = typer.Option(
        0.0,
        help="Add Gaussian noise to each training stamp's bands, of a standard deviation "
        "drawn from [0, this] (normalized units; the segmenter trains with 0.15).",
    ),
    noise_fraction: float = typer.Option(
        1.0, help="The fraction of the training stamps given noise (with --noise-max)."
    ),
    noise_channel: bool = typer.Option(
        False,
        help="Show the network each stamp's measured background noise as one more channel.",
    ),
    mask_jitter: int = typer.Option(
        0,
        help="Erode or dilate each training stamp's detector mask by up to this many pixels "
        "(drawn per stamp), so that the refiner reads the source's size from its pixels.",
    ),
    name: str = typer.Option("mask_refiner", help="Name of the weights and card."),
    threads: int = typer.Option(2, help="CPU threads for training."),
    workers: int = FIELD_WORKERS,
    data_dir: Path = FIELDS_DIR,
    run_dir: Path = typer.Option(
        Path("runs/mask_refiner"), help="Stamps, best weights, log and summary."
    ),
    out: Path = WEIGHTS_OUT,
    quiet: bool = QUIET,
) -> None:
    """Train the segmenter's mask refiner, measure it on validation stamps, write weights.

    Simulates 1,200 training, 128 validation and 128 test typical DECaLS fields of 256x256
    if missing (about 10 minutes on two processes), cuts a stamp around every small
    detection of the segmenter (4 minutes) and trains a U-Net to draw the truth mask of the
    source under it (about 20 minutes on two threads); the card holds the stamps' figures
    on the validation and the held-out test fields, and the noisiest stamp the refiner will
    draw (the 99th percentile of its training stamps' noise; no limit with --noise-max).
    """
    from skysift.train.mask_refiner import (
        MaskRefinerTrainingConfig,
        finish_mask_refiner,
        prepare_data,
        train_mask_refiner,
    )
    from skysift.train.segmenter import checked_model_name, positive_integers

    def run() -> None:
        config = MaskRefinerTrainingConfig(
            name=checked_model_name(name),
            seed=seed,
            segmenter=segmenter,
            epochs=epochs,
            widths=positive_integers(widths, "--widths"),
            noise_max=noise_max,
            noise_fraction=noise_fraction,
            noise_channel=noise_channel,
            mask_jitter=mask_jitter,
            threads=threads,
            workers=workers,
            **_role_dirs(data_dir, "mask_refiner"),
            run_dir=str(run_dir),
        )
        prepare_data(config, progress=not quiet)
        _train_then_finish(
            config,
            lambda c, progress: train_mask_refiner(c, progress=progress) / "best.safetensors",
            finish_mask_refiner,
            quiet=quiet,
            out_dir=out,
        )

    _guarded(run)


@train_app.command("colour-typer")
def train_colour_typer_command(
    seed: int = typer.Option(0, help="Seed of the network initialization and batch order."),
    n_train_fields: int = typer.Option(1024, help="Typical 256x256 training fields."),
    epochs: int = typer.Option(60, help="Passes over the training instances."),
    mask_light: bool = typer.Option(
        False,
        "--mask-light",
        help="Also read how the light lies in each mask (a mask drawn too wide; measured "
        "without effect, docs/models.md session 44).",
    ),
    aperture_profile: bool = typer.Option(
        False,
        "--aperture-profile",
        help="Also read the light in apertures of 0.4 and 1.6 PSF FWHM: a source's extent "
        "from its pixels, whatever its mask (docs/models.md, session 47).",
    ),
    stargalaxy: str = typer.Option(
        None,
        "--stargalaxy",
        help="Also read this star/galaxy classifier's call on a cutout of each instance's "
        "pixels, with no mask (e.g. 'stargalaxy'; docs/models.md, session 48).",
    ),
    bright_weight: float = typer.Option(
        1.0,
        help="Loss weight of the instances Burke et al.'s figure counts at S/N >= 20 (false "
        "ones, and matches to truth that bright) against 1 for fainter matches "
        "(docs/models.md, session 46).",
    ),
    second_look: list[str] = typer.Option(
        ["second_look_reject", "second_look_reject_refined"],
        help="The chain's second looks whose averaged probabilities the typer reads, each "
        "shown the masks it was trained on (repeat the option; shipped names, or cards "
        "written by `skysift train second-look --out`, paths ending in .json).",
    ),
    name: str = typer.Option("colour_typer", help="Name of the weights and card."),
    threads: int = typer.Option(2, help="CPU threads for the chain and the training."),
    workers: int = FIELD_WORKERS,
    data_dir: Path = FIELDS_DIR,
    run_dir: Path = typer.Option(
        Path("runs/colour_typer"), help="Chain instances, best weights and summary."
    ),
    out: Path = WEIGHTS_OUT,
    quiet: bool = QUIET,
) -> None:
    """Train the segmenter chain's colour typer (star / galaxy / false from the chain's
    outputs and each instance's aperture colours), measure it held out, write weights.

    Simulates 1,024 training, 128 validation and 128 test typical DECaLS fields of 256x256
    if missing (about 25 minutes on two processes), runs the recommended chain without the
    typer on them (about 15 minutes) and trains a small network on its instances (about a
    minute); the card holds its figures and the chain's own on the held-out test fields.
    """
    from skysift.train.colour_typer import (
        ColourTyperTrainingConfig,
        finish_colour_typer,
        prepare_data,
        train_colour_typer,
    )
    from skysift.train.segmenter import checked_model_name

    def run() -> None:
        config = ColourTyperTrainingConfig(
            name=checked_model_name(name),
            seed=seed,
            n_train_fields=n_train_fields,
            epochs=epochs,
            mask_light=mask_light,
            aperture_profile=aperture_profile,
            stargalaxy=stargalaxy,
            bright_weight=bright_weight,
            second_look=tuple(second_look),
            threads=threads,
            workers=workers,
            **_role_dirs(data_dir, "colour_typer"),
            run_dir=str(run_dir),
        )
        prepare_data(config, progress=not quiet)
        _train_then_finish(
            config, train_colour_typer, finish_colour_typer, quiet=quiet, out_dir=out
        )

    _guarded(run)


@train_app.command("stargalaxy")
def train_stargalaxy_command(
    seed: int = typer.Option(0, help="Seed of the network initialization and batch order."),
    n_train_fields: int = typer.Option(120, help="Simulated 1024x1024 detector pieces."),
    n_test_fields: int = typer.Option(30, help="Held-out test-seed pieces for the card."),
    no_position: bool = typer.Option(
        False, "--no-position", help="Drop the position branch (the paper's ablation)."
    ),
    no_seeing: bool = typer.Option(
        False,
        "--no-seeing",
        help="Do not give the network the image's measured seeing (the paper's inputs only).",
    ),
    seeing_only: bool = typer.Option(
        False,
        "--seeing-only",
        help="Give the branch the seeing but not the position (the benchmark's ablation).",
    ),
    focal_alpha: float = typer.Option(1.0, help="Focal-loss alpha (1 with gamma 0: BCE)."),
    focal_gamma: float = typer.Option(0.0, help="Focal-loss gamma."),
    max_epochs: int = typer.Option(30, help="Upper bound on epochs (early stopping: 10)."),
    threads: int = typer.Option(2, help="PyTorch threads for training."),
    data_dir: Path = typer.Option(Path("data"), help="Where simulated cutouts are cached."),
    run_dir: Path = typer.Option(Path("runs/stargalaxy"), help="Checkpoints and the log."),
    out: Path = WEIGHTS_OUT,
    quiet: bool = QUIET,
) -> None:
    """Simulate varying-PSF MeerLICHT fields, cut sources at the localizer's positions, train
    the star/galaxy network, calibrate it (L-T Platt) and write weights + card.

    Needs the shipped localizer (its detections are the training positions). Every stage
    resumes: cutouts already on disk and the last epoch's checkpoint are reused.
    """
    from skysift.train.stargalaxy import (
        StarGalaxyTrainingConfig,
        finish_stargalaxy,
        prepare_data,
        train_stargalaxy,
    )

    def run() -> None:
        config = StarGalaxyTrainingConfig(
            seed=seed,
            n_train_fields=n_train_fields,
            n_test_fields=n_test_fields,
            position_branch=not no_position,
            seeing_input=not no_seeing,
            position_input=not seeing_only,
            focal_alpha=focal_alpha,
            focal_gamma=focal_gamma,
            max_epochs=max_epochs,
            threads=threads,
            data_dir=str(data_dir / "stargalaxy_train"),
            test_dir=str(data_dir / "stargalaxy_test"),
            run_dir=str(run_dir),
        )
        prepare_data(config, progress=not quiet)
        module, _ = train_stargalaxy(config, progress=not quiet)
        weights = finish_stargalaxy(config, module, out_dir=out)
        typer.echo(f"wrote {weights}")

    _guarded(run)


def _write_table(table, path: Path) -> None:
    from skysift.io import write_catalog

    write_catalog(table, path, overwrite=True)  # existence was checked before the run


def _write_map(probability, image, path: Path) -> None:
    from astropy.io import fits

    from skysift.io import atomic_write

    header = image.wcs.to_header() if image.wcs is not None else None
    with atomic_write(path) as tmp:
        fits.PrimaryHDU(probability, header=header).writeto(tmp)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _guarded(action) -> None:
    """Run ``action``; turn skysift's own errors into one line on stderr and exit code 2."""
    from skysift.errors import SkysiftError

    try:
        action()
    except (SkysiftError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None


def main() -> None:
    """Entry point of the ``skysift`` console script."""
    app(prog_name="skysift")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
