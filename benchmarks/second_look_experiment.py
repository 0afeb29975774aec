"""Experiment: a PSF-aware star/galaxy second look at the segmenter's catalog instances.

``benchmarks/segmenter_limits.py`` shows that the largest loss in Burke et al.'s figure is
star/galaxy confusion of compact galaxies, and what a perfect re-classification would reach.
This experiment measures how much of that a small network gets back. It is ASID-C's image
branch (three 3x3 convolutions of 32 filters, each max-pooled) on a 32x32 cutout at the
image's own pixel scale, centred on the instance's mask: the normalized bands plus the
instance's own mask as one more channel (so a neighbour is not taken for the source). A
context branch gets the PSF FWHM (``log(FWHM / 4.5 px)``; with ``--context fwhm+detector``
also the detector's P(star) and P(source), which the network then leans on). It is trained
on the catalog instances that match a truth source (mask IoU >= 0.5), labelled with the
truth's group.

- Training: the segmenter's catalog on training-seed images (the first ``--n-train`` of
  ``data/segmenter_train`` and of ``data/segmenter_train_typical``).
- Epoch selection: the validation images (``data/segmenter_val``).
- Scored: Burke et al.'s figure on the validation typical fields, before and after, with
  the true-group ceiling of ``segmenter_limits``. Validation seeds only: an experiment that
  steers the next model.

Each instance then gets the second look's group (a galaxy keeps its type, a star made a
galaxy becomes ``other``) and is ranked by P(source) x P(its group).

Run: ``.venv/bin/python benchmarks/second_look_experiment.py --model segmenter_psf``.
Writes ``benchmarks/results/<model>_second_look[_with_detector].json`` (session 14: 20 epochs
with the FWHM alone, 12 with the detector's probabilities too).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from segmenter_limits import catalogs_of, limits, markdown  # the sibling script

from skysift.evaluate.segmentation import figure_matches
from skysift.models.registry import load_model
from skysift.morphology import GalaxyTyper
from skysift.train.segmenter import load_images, sample_targets

ROOT = Path(__file__).resolve().parents[1]
CUTOUT = 32
#: Training images simulated, detected and cut at a time.
CHUNK = 32
SEEING_REFERENCE = 4.5


def instance_cutouts(image: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """``(n, bands + 1, 32, 32)``: the bands and the instance's own mask, centred on the
    mask's centre (zero outside the image)."""
    bands, height, width = image.shape
    out = np.zeros((len(masks), bands + 1, CUTOUT, CUTOUT), dtype=np.float32)
    half = CUTOUT // 2
    for k, mask in enumerate(masks):
        rows, cols = np.nonzero(mask)
        if not rows.size:
            continue
        cy, cx = round(rows.mean()), round(cols.mean())
        y0, x0 = cy - half, cx - half
        ys = slice(max(y0, 0), min(y0 + CUTOUT, height))
        xs = slice(max(x0, 0), min(x0 + CUTOUT, width))
        dest = (slice(ys.start - y0, ys.stop - y0), slice(xs.start - x0, xs.stop - x0))
        out[k, :bands, dest[0], dest[1]] = image[:, ys, xs]
        out[k, bands, dest[0], dest[1]] = mask[ys, xs]
    return out


def instance_context(catalog: dict, psf_fwhm: float, *, detector: bool) -> np.ndarray:
    """``log(FWHM / 4.5 px)``, and with ``detector`` the detector's P(star) and P(source)."""
    p_star = np.asarray(catalog["p_star"], dtype=np.float32)
    seeing = np.full_like(p_star, np.log(psf_fwhm / SEEING_REFERENCE))
    if not detector:
        return seeing[:, None]
    p_source = p_star + np.asarray(catalog["p_galaxy"], dtype=np.float32)
    return np.stack([seeing, p_star, p_source], axis=1)


def stamps(
    catalogs: list[dict], samples: list[dict], star: int, *, matched_only: bool, detector: bool
):
    """Cutouts, context and (for matched instances) truth labels (1 = star)."""
    targets = [sample_targets(s["labels"], s["ids"], s["classes"]) for s in samples]
    truth_index, _ = figure_matches(catalogs, targets, unmasked=[s["unmasked"] for s in samples])
    cut, context, label, where = [], [], [], []
    for k, (catalog, sample, target, index) in enumerate(
        zip(catalogs, samples, targets, truth_index, strict=True)
    ):
        if not len(catalog["scores"]):
            continue
        keep = index >= 0 if matched_only else np.ones(len(index), dtype=bool)
        masks = np.asarray(catalog["masks"])[keep, 0] >= 0.5
        cut.append(instance_cutouts(sample["image"], masks))
        context.append(instance_context(catalog, sample["psf_fwhm"], detector=detector)[keep])
        true_star = np.asarray(target["labels"]) == star
        label.append(np.where(index[keep] >= 0, true_star[np.maximum(index[keep], 0)], False))
        where += [(k, int(i)) for i in np.flatnonzero(keep)]
    return (
        np.concatenate(cut),
        np.concatenate(context),
        np.concatenate(label).astype(np.float32),
        where,
    )


def build_network(channels: int, n_context: int):
    import torch
    from torch import nn

    class SecondLook(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            layers, previous = [], channels
            for _ in range(3):
                layers += [nn.Conv2d(previous, 32, 3), nn.ReLU(), nn.MaxPool2d(2)]
                previous = 32
            self.image = nn.Sequential(*layers, nn.Flatten())
            self.context = nn.Sequential(nn.Linear(n_context, 32), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(128 + 32, 64), nn.ReLU(), nn.Linear(64, 1))

        def forward(self, cutouts, context):
            features = torch.cat([self.image(cutouts), self.context(context)], dim=1)
            return self.head(features).squeeze(1)

    return SecondLook()


def probabilities(network, cutouts: np.ndarray, context: np.ndarray) -> np.ndarray:
    import torch

    network.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(cutouts), 1024):
            logits = network(
                torch.from_numpy(cutouts[start : start + 1024]),
                torch.from_numpy(context[start : start + 1024]),
            )
            out.append(torch.sigmoid(logits).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def train(train_set, val_set, *, epochs: int, seed: int) -> tuple:
    import torch
    from sklearn.metrics import log_loss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cut, context, label, _ = train_set
    network = build_network(cut.shape[1], context.shape[1])
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    best, best_state, history = np.inf, None, []
    for epoch in range(epochs):
        network.train()
        order = rng.permutation(len(cut))
        for start in range(0, len(order), 256):
            batch = order[start : start + 256]
            x = cut[batch]
            if rng.random() < 0.5:
                x = x[..., ::-1]
            x = np.rot90(x, k=int(rng.integers(4)), axes=(2, 3))
            logits = network(
                torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(context[batch])
            )
            loss = loss_fn(logits, torch.from_numpy(label[batch]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        p = probabilities(network, val_set[0], val_set[1])
        value = log_loss(val_set[2], np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])
        history.append({"epoch": epoch + 1, "validation_log_loss": float(value)})
        print(f"epoch {epoch + 1}: validation log loss {value:.4f}", flush=True)
        if value < best:
            best = value
            best_state = {k: v.clone() for k, v in network.state_dict().items()}
    network.load_state_dict(best_state)
    return network, history


def relabelled(catalogs: list[dict], p_star: np.ndarray, where, *, star: int, other: int):
    """Catalogs with each instance's group from the second look, ranked by P(source) x
    P(group)."""
    out = [dict(c) for c in catalogs]
    for c in out:
        c["labels"] = np.asarray(c["labels"]).copy()
        c["scores"] = np.asarray(c["scores"], dtype=float).copy()
    for p, (k, i) in zip(p_star, where, strict=True):
        c = out[k]
        source = float(c["p_star"][i] + c["p_galaxy"][i])
        if p >= 0.5:
            c["labels"][i], c["scores"][i] = star, source * p
        else:
            if c["labels"][i] == star:
                c["labels"][i] = other
            c["scores"][i] = source * (1 - p)
    for c in out:
        c["detection_scores"] = c["scores"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="segmenter_psf")
    parser.add_argument("--n-train", type=int, default=600, help="Images of each training set.")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--context",
        choices=("fwhm", "fwhm+detector"),
        default="fwhm",
        help="The context branch's inputs: the PSF FWHM, and optionally the detector's "
        "P(star) and P(source).",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    detector = args.context == "fwhm+detector"
    started = time.time()
    module, _ = load_model(args.model)
    classes = module.skysift_config.classes
    star, other = classes.index("star") + 1, classes.index("other") + 1
    typer = GalaxyTyper()
    data = ROOT / "data"

    def catalog_set(name: str):
        samples = load_images(str(data / name))
        return catalogs_of(module, samples, galaxy_typer=typer), samples

    train_stamps = []
    for name in ("segmenter_train", "segmenter_train_typical"):
        manifest = json.loads((data / name / "manifest.json").read_text())
        seeds = sorted(entry["seed"] for entry in manifest["shards"])
        for start in range(0, min(args.n_train, len(seeds)), CHUNK):
            # a chunk at a time: the detector's masks take ~15 MB per image
            chunk = seeds[start : min(start + CHUNK, args.n_train)]
            samples = load_images(str(data / name), seeds=chunk)
            catalogs = catalogs_of(module, samples, galaxy_typer=typer)
            part = stamps(catalogs, samples, star, matched_only=True, detector=detector)
            train_stamps.append(part)
    train_set = (*(np.concatenate([t[i] for t in train_stamps]) for i in range(3)), None)
    val_catalogs, val_samples = catalog_set("segmenter_val")
    val_set = stamps(val_catalogs, val_samples, star, matched_only=True, detector=detector)
    print(
        f"{len(train_set[0])} training stamps ({train_set[2].mean():.2f} stars), "
        f"{len(val_set[0])} validation stamps",
        flush=True,
    )
    network, history = train(train_set, val_set, epochs=args.epochs, seed=args.seed)

    result = {
        "model": args.model,
        "detector_context": detector,
        "n_train_stamps": len(train_set[0]),
        "history": history,
    }
    for name in ("segmenter_typical_validation", "segmenter_val"):
        catalogs, samples = catalog_set(name)
        cut, context, _, where = stamps(
            catalogs, samples, star, matched_only=False, detector=detector
        )
        p_star = probabilities(network, cut, context)
        after = relabelled(catalogs, p_star, where, star=star, other=other)
        cuts = (20.0, 50.0, 100.0)
        for label, these in (("before", catalogs), ("after", after)):
            rows = limits(these, samples, classes, cuts)
            rows.update(model=f"{args.model} {label}", image_set=name, galaxy_types=True)
            result[f"{name}_{label}"] = rows
            print(markdown(rows), flush=True)
    result["seconds"] = time.time() - started
    tag = "_with_detector" if detector else ""
    out = ROOT / "benchmarks" / "results" / f"{args.model}_second_look{tag}.json"
    out.write_text(json.dumps(result, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
