"""Star/galaxy benchmark: the shipped ASID-C network vs its no-position ablation, a
gradient-boosting classifier on SEP catalog features, and a random 10:1 baseline.

Run: ``.venv/bin/python benchmarks/bench_stargalaxy.py`` after ``skysift train stargalaxy``
(which simulates the cutouts under ``data/``). Everything is scored on the held-out test-seed
fields; calibration maps are fitted on the calibration split of the training fields. The
position ablation trains 3 seeds with and 3 without the position branch on the same reduced
budget (``--ablation-samples`` per epoch, ``--ablation-epochs`` at most) so the difference is
measured between like and like. Writes ``benchmarks/results/stargalaxy.json``,
``docs/benchmarks/stargalaxy.md`` and the figures in ``docs/images/stargalaxy_*.png``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import numpy as np

from skysift.calibration import fit_platt
from skysift.evaluate.classification import (
    binned_classification_metrics,
    classification_metrics,
    reliability_curve,
)
from skysift.evaluate.feature_classifier import FeatureClassifier
from skysift.models.registry import load_model
from skysift.stargalaxy import StarGalaxyClassifier
from skysift.train.stargalaxy import (
    SNR_BINS,
    StarGalaxyTrainingConfig,
    load_split,
    network_context,
    predict_raw,
    split_indices,
    train_stargalaxy,
)

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"


#: Ablation variants: (position branch, position input, seeing input).
VARIANTS = {
    "none": (False, True, False),  # the paper's appendix-A ablation: no branch at all
    "position": (True, True, False),  # the paper's network
    "seeing": (True, False, True),  # the image's measured seeing, no position
    "position+seeing": (True, True, True),  # skysift's default
}
#: Pairs whose outer-ROC-AUC difference measures the position branch's gain.
POSITION_GAINS = (("position", "none"), ("position+seeing", "seeing"))


def ablation(
    data,
    splits,
    test,
    *,
    samples: int,
    epochs: int,
    variants=tuple(VARIANTS),
    seeds=(0, 1, 2),
    threads: int = 2,
    run_root: Path = ROOT / "runs" / "stargalaxy_ablation",
) -> list[dict]:
    """ROC-AUC (all, inner, outer) of networks with different context inputs, per seed.

    Each network trains in ``run_root/<variant>_seed<seed>`` (and resumes from there)."""
    rows = []
    inner = test["radius"] < 0.5
    for variant in variants:
        branch, position, seeing = VARIANTS[variant]
        for seed in seeds:
            name = f"{variant}_seed{seed}"
            config = StarGalaxyTrainingConfig(
                run_dir=str(Path(run_root) / name),
                position_branch=branch,
                position_input=position,
                seeing_input=seeing,
                seed=seed,
                max_epochs=epochs,
                max_train_samples=samples,
                threads=threads,
            )
            module, history = train_stargalaxy(config, data, splits, progress=False)
            cal = splits["calibration"]
            calibration = fit_platt(
                predict_raw(module, data["cutout"][cal], network_context(module.config, data, cal)),
                data["label"][cal],
            )
            p = calibration(
                predict_raw(module, test["cutout"], network_context(module.config, test))
            )
            row = {
                "variant": variant,
                "measured": time.strftime("%Y-%m-%d"),
                "seed": seed,
                "epochs": len(history),
                "all": classification_metrics(test["label"], p),
                "inner": classification_metrics(test["label"][inner], p[inner]),
                "outer": classification_metrics(test["label"][~inner], p[~inner]),
                "outer_by_snr": _roc_auc_by_snr(test, p, ~inner),
            }
            rows.append(row)
            print(
                f"{name}: AUC {row['all']['roc_auc']:.4f} inner {row['inner']['roc_auc']:.4f} "
                f"outer {row['outer']['roc_auc']:.4f} ({len(history)} epochs)",
                flush=True,
            )
    return rows


def _roc_auc_by_snr(test, p, selected) -> list[float | None]:
    """ROC-AUC of ``p`` in each of ``SNR_BINS`` among the ``selected`` test sources."""
    table = binned_classification_metrics(
        test["label"][selected], p[selected], test["snr"][selected], bins=SNR_BINS
    )
    return [float(v) if np.isfinite(v) else None for v in table["roc_auc"]]


def load_ablation_data(train_dir, test_dir) -> tuple[dict, dict, dict]:
    """Training samples, held-out test samples, and the stratified splits of the former."""
    data = load_split(str(train_dir))
    test = load_split(str(test_dir))
    return data, test, split_indices(data["label"], data["snr"])


def previous_rows(path: Path, skip: set[str]) -> list[dict]:
    """Ablation rows of an earlier run of this benchmark (same data and budget), for the
    variants not re-run now. Rows written before the seeing variants existed name their
    variant by ``position_branch``."""
    if not path.exists():
        return []
    earlier = json.loads(path.read_text())
    rows, date = earlier.get("ablation", []), earlier.get("date")
    out = []
    for row in rows:
        variant = row.get("variant") or ("position" if row["position_branch"] else "none")
        if variant not in skip:
            out.append({**row, "variant": variant, "measured": row.get("measured", date)})
    return out


def ablation_summary(rows: list[dict]) -> dict:
    """Mean and spread per variant, and the per-seed outer gains of the position input."""
    summary: dict = {"variants": {}, "position_gain_outer": {}, "position_gain_outer_by_snr": {}}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        chosen = [r for r in rows if r["variant"] == variant]
        summary["variants"][variant] = {
            part: _mean_std([r[part]["roc_auc"] for r in chosen])
            for part in ("all", "inner", "outer")
        } | {"measured": sorted({str(r.get("measured")) for r in chosen})}
    for with_, without in POSITION_GAINS:
        a = {r["seed"]: r for r in rows if r["variant"] == with_}
        b = {r["seed"]: r for r in rows if r["variant"] == without}
        seeds = sorted(a.keys() & b.keys())
        if seeds:
            diffs = [a[s]["outer"]["roc_auc"] - b[s]["outer"]["roc_auc"] for s in seeds]
            summary["position_gain_outer"][f"{with_} - {without}"] = [*_mean_std(diffs), diffs]
            if all("outer_by_snr" in a[s] and "outer_by_snr" in b[s] for s in seeds):
                per_bin = np.array(
                    [[np.nan if v is None else v for v in a[s]["outer_by_snr"]] for s in seeds]
                ) - np.array(
                    [[np.nan if v is None else v for v in b[s]["outer_by_snr"]] for s in seeds]
                )
                summary["position_gain_outer_by_snr"][f"{with_} - {without}"] = [
                    _mean_std(column) for column in per_bin.T
                ]
    return summary


def feature_baseline(data, splits, test) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated P(star) of gradient boosting on catalog features (test), and its raw one."""
    train = np.concatenate([splits["train"], splits["validation"]])
    model = FeatureClassifier(seed=0).fit(data["features"][train], data["label"][train])
    calibration = fit_platt(
        np.clip(model.predict_proba(data["features"][splits["calibration"]]), 0, 1),
        data["label"][splits["calibration"]],
    )
    raw = np.clip(model.predict_proba(test["features"]), 0, 1)
    return calibration(raw), raw


def table_rows(methods: dict[str, np.ndarray], test) -> dict[str, list[dict]]:
    out = {}
    for name, p in methods.items():
        table = binned_classification_metrics(test["label"], p, test["snr"], bins=SNR_BINS)
        out[name] = [
            {k: (float(row[k]) if np.isfinite(row[k]) else None) for k in table.colnames}
            for row in table
        ]
    return out


def speed(classifier: StarGalaxyClassifier, n: int = 100_000) -> dict[str, float]:
    """Microseconds per source: network alone (batched) and end to end on a 4096^2 image."""
    from skysift.image import Image

    rng = np.random.default_rng(0)
    cutouts = rng.normal(size=(n, 32, 32)).astype(np.float32)
    positions = rng.uniform(-1, 1, (n, classifier.config.context_size)).astype(np.float32)
    classifier.raw_scores(cutouts[:4096], positions[:4096])  # warm up
    start = time.perf_counter()
    classifier.raw_scores(cutouts, positions)
    network = time.perf_counter() - start
    image = Image.from_array(rng.normal(100.0, 5.0, (4096, 4096)).astype(np.float32))
    x, y = rng.uniform(0, 4095, n), rng.uniform(0, 4095, n)
    start = time.perf_counter()
    classifier(image, x, y)
    total = time.perf_counter() - start
    return {
        "n_sources": n,
        "network_us_per_source": 1e6 * network / n,
        "end_to_end_us_per_source": 1e6 * total / n,
        "batch_size": classifier.batch_size,
    }


def figures(test, raw, maps, module) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from skysift.train.stargalaxy import _centre

    IMAGES.mkdir(parents=True, exist_ok=True)
    labels = test["label"]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharey=True)
    for ax, (title, p) in zip(
        axes,
        [
            ("raw network output", raw),
            ("Platt", maps["platt"](raw)),
            ("L-T Platt", maps["lt"](raw)),
        ],
        strict=True,
    ):
        curve = reliability_curve(labels, p, n_bins=15)
        filled = curve["count"] > 0
        ax.plot([0, 1], [0, 1], color="0.6", lw=1)
        ax.plot(curve["mean_predicted"][filled], curve["fraction_positive"][filled], "o-")
        ece = classification_metrics(labels, p)["ece"]
        ax.set_title(f"{title}: ECE {ece:.4f}")
        ax.set_xlabel("predicted P(star)")
    axes[0].set_ylabel("fraction of stars")
    fig.tight_layout()
    reliability = IMAGES / "stargalaxy_reliability.png"
    fig.savefig(reliability, dpi=110)
    plt.close(fig)

    from sklearn.decomposition import PCA

    pick = np.random.default_rng(1).choice(len(labels), min(20_000, len(labels)), replace=False)
    with torch.inference_mode():
        emb = module.embedding(
            torch.from_numpy(_centre(test["cutout"][pick])[:, None]),
            torch.from_numpy(network_context(module.config, test, pick)),
        ).numpy()
    xy = PCA(n_components=2, random_state=0).fit_transform(emb)
    p = maps["lt"](raw[pick])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    for cls, colour, name in ((1, "tab:blue", "star"), (0, "tab:red", "galaxy")):
        sel = labels[pick] == cls
        axes[0].scatter(xy[sel, 0], xy[sel, 1], s=2, c=colour, alpha=0.4, label=name)
    axes[0].legend(markerscale=5)
    axes[0].set_title("32-d layer, PCA: true class")
    sc = axes[1].scatter(xy[:, 0], xy[:, 1], s=2, c=p, cmap="coolwarm_r", vmin=0, vmax=1)
    fig.colorbar(sc, ax=axes[1], label="calibrated P(star)")
    axes[1].set_title("coloured by prediction")
    fig.tight_layout()
    embedding = IMAGES / "stargalaxy_embedding.png"
    fig.savefig(embedding, dpi=110)
    plt.close(fig)
    return {
        "reliability": str(reliability.relative_to(ROOT)),
        "embedding": str(embedding.relative_to(ROOT)),
    }


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def write_markdown(result: dict, path: Path) -> None:
    bins = result["snr_bins"]
    labels = [f"{lo:g}-{hi:g}" if hi < 1e8 else f">={lo:g}" for lo, hi in itertools.pairwise(bins)]
    lines = [
        "# Star/galaxy benchmark",
        "",
        f"Generated by `benchmarks/bench_stargalaxy.py` on {result['date']}, 2 cores. "
        f"{result['n_test']} cutouts from held-out test-seed fields "
        f"({100 * result['star_fraction']:.1f}% stars); calibration fitted on the calibration "
        "split of the training fields. Truth S/N (optimal, detection band) bins.",
        "",
        "## Table I format",
        "",
        "| metric | method | " + " | ".join(labels) + " |",
        "|---|---|" + "---|" * len(labels),
    ]
    metrics = [
        ("ROC-AUC", "roc_auc"),
        ("AUPRC (s)", "auprc_positive"),
        ("AUPRC (g)", "auprc_negative"),
        ("Brier", "brier"),
    ]
    for title, key in metrics:
        for method, rows in result["by_snr"].items():
            lines.append(f"| {title} | {method} | " + " | ".join(_fmt(r[key]) for r in rows) + " |")
    lines += [
        "",
        "Sources per bin (stars / all): "
        + ", ".join(
            f"{lab}: {int(r['n_positive'])}/{int(r['n'])}"
            for lab, r in zip(labels, result["by_snr"]["skysift"], strict=True)
        ),
        "",
    ]
    lines += [
        "## Overall (test split)",
        "",
        "| method | ROC-AUC | AUPRC (s) | AUPRC (g) | Brier | ECE |",
        "|---|---|---|---|---|---|",
    ]
    for method, m in result["overall"].items():
        lines.append(
            f"| {method} | {m['roc_auc']:.4f} | {m['auprc_positive']:.4f} | "
            f"{m['auprc_negative']:.4f} | {m['brier']:.4f} | {m['ece']:.4f} |"
        )
    ab = result["ablation_summary"]
    lines += [
        "",
        "## Context inputs: position and seeing (3 seeds each, same reduced budget)",
        "",
        f"Budget: {result['ablation_budget']['samples']} training cutouts, at most "
        f"{result['ablation_budget']['epochs']} epochs. Inner = within half the detector "
        "half-diagonal of the optical axis; outer = beyond, where the PSF is broadest and most "
        "elongated. *none* is the paper's appendix-A ablation (no position branch), "
        "*position* the paper's network, *seeing* gives the branch only the image's measured "
        "seeing FWHM, *position+seeing* both (skysift's default).",
        "",
        "| network | ROC-AUC all | ROC-AUC inner | ROC-AUC outer |",
        "|---|---|---|---|",
    ]
    for name, s in ab["variants"].items():
        dates = [d for d in s.get("measured", []) if d != result["date"]]
        label = f"{name} (run of {', '.join(dates)})" if dates else name
        lines.append(
            f"| {label} | {s['all'][0]:.4f} +- {s['all'][1]:.4f} | {s['inner'][0]:.4f} +- "
            f"{s['inner'][1]:.4f} | {s['outer'][0]:.4f} +- {s['outer'][1]:.4f} |"
        )
    lines.append("")
    for pair, d in ab["position_gain_outer"].items():
        lines.append(
            f"Outer ROC-AUC difference {pair} (per seed pair): {d[0]:+.4f} +- {d[1]:.4f} "
            f"(values {', '.join(f'{v:+.4f}' for v in d[2])})."
        )
    lines += [
        "",
        "## Speed",
        "",
        f"Network alone, batches of {result['speed']['batch_size']}: "
        f"{result['speed']['network_us_per_source']:.1f} us/source; end to end (background, "
        f"cutouts, normalization, network, calibration) for {result['speed']['n_sources']:,} "
        f"sources on a 4096x4096 image: {result['speed']['end_to_end_us_per_source']:.1f} "
        "us/source. The paper quotes 36 us/source on a GPU.",
        "",
        "## Figures",
        "",
        f"![reliability](../../{result['figures']['reliability']})",
        "",
        f"![embedding](../../{result['figures']['embedding']})",
        "",
        "umap-learn is not a dependency; the 32-d layer is shown with PCA instead.",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _mean_std(values) -> list[float]:
    values = np.asarray(values, float)
    return [float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ablation-samples", type=int, default=50_000)
    parser.add_argument("--ablation-epochs", type=int, default=20)
    parser.add_argument("--data-dir", default=str(ROOT / "data"))
    parser.add_argument(
        "--ablation-only", action="store_true", help="Train/score the ablation networks only."
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="Comma-separated ablation variants: " + ", ".join(VARIANTS),
    )
    parser.add_argument(
        "--keep-previous",
        action="store_true",
        help="Add the earlier results file's ablation rows for variants not run now.",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    results_path = ROOT / "benchmarks" / "results" / "stargalaxy.json"
    data, test, splits = load_ablation_data(
        f"{args.data_dir}/stargalaxy_train", f"{args.data_dir}/stargalaxy_test"
    )
    rows = ablation(
        data,
        splits,
        test,
        samples=args.ablation_samples,
        epochs=args.ablation_epochs,
        variants=tuple(args.variants.split(",")),
        threads=args.threads,
    )
    if args.keep_previous:
        rows = previous_rows(results_path, set(args.variants.split(","))) + rows
    if args.ablation_only:
        return
    config = StarGalaxyTrainingConfig()
    classifier = StarGalaxyClassifier()
    module, _ = load_model("stargalaxy")
    cal = splits["calibration"]
    cal_raw = predict_raw(module, data["cutout"][cal], network_context(module.config, data, cal))
    maps = {
        "platt": fit_platt(cal_raw, data["label"][cal], logit_input=False),
        "lt": classifier.calibration,
    }
    raw = predict_raw(module, test["cutout"], network_context(module.config, test))
    p_skysift = maps["lt"](raw)
    p_features, p_features_raw = feature_baseline(data, splits, test)
    star_fraction = float(np.mean(data["label"][splits["train"]]))
    rng = np.random.default_rng(0)
    p_random = (rng.random(len(test["label"])) < star_fraction).astype(float)
    summary = ablation_summary(rows)
    methods = {
        "skysift": p_skysift,
        "features (GBT)": p_features,
        "random 10:1": p_random,
    }
    inner = test["radius"] < 0.5
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "n_test": len(test["label"]),
        "star_fraction": float(np.mean(test["label"])),
        "snr_bins": list(SNR_BINS),
        "by_snr": table_rows(methods, test),
        "overall": {
            "skysift (L-T Platt)": classification_metrics(test["label"], p_skysift),
            "skysift (Platt)": classification_metrics(test["label"], maps["platt"](raw)),
            "skysift (raw)": classification_metrics(test["label"], raw),
            "features (GBT, L-T Platt)": classification_metrics(test["label"], p_features),
            "features (GBT, raw)": classification_metrics(test["label"], p_features_raw),
            "random 10:1": classification_metrics(test["label"], p_random),
        },
        "inner_outer": {
            name: {
                "inner": classification_metrics(test["label"][inner], p[inner]),
                "outer": classification_metrics(test["label"][~inner], p[~inner]),
            }
            for name, p in methods.items()
        },
        "ablation": rows,
        "ablation_summary": summary,
        "ablation_budget": {"samples": args.ablation_samples, "epochs": args.ablation_epochs},
        "speed": speed(classifier),
        "figures": figures(test, raw, maps, module),
        "config": dataclasses.asdict(config),
    }
    out = results_path
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    write_markdown(result, ROOT / "docs" / "benchmarks" / "stargalaxy.md")
    print(json.dumps(result["overall"], indent=1))


if __name__ == "__main__":
    main()
