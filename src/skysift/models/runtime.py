"""Run a network on numpy batches, as fast as this CPU allows.

ONNX Runtime ran every skysift network fastest on the reference machine (2 cores, AVX2), so
:func:`make_runner` exports the PyTorch module to ONNX in memory and runs it there; without
``onnxruntime`` it falls back to eager PyTorch in inference mode, after setting glibc's malloc
to keep freed memory (eager PyTorch otherwise spends most of its time in page faults). Runners
return probabilities (the sigmoid of the network's logits).

Shipped models (:func:`shipped_runner`) are exported once and the ONNX graph cached on disk
(``$SKYSIFT_CACHE_DIR``, default ``~/.cache/skysift``), named by the sha256 of the verified
weights: later processes run them without importing PyTorch at all, which saves ~0.5 GB of
memory and a few seconds of start-up per process (importing torch alone maps ~0.5 GB).
"""

from __future__ import annotations

import ctypes
import functools
import io
import logging
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "cache_dir",
    "make_multi_input_runner",
    "make_runner",
    "shipped_runner",
    "tune_malloc",
]

#: Version of the export below; bump it when the export changes so that cached graphs made by
#: an older skysift are not reused.
EXPORT_VERSION = 1
_IMAGE_AXES = {"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}}


@functools.cache
def tune_malloc() -> bool:
    """Ask glibc to keep freed memory mapped (M_MMAP_MAX=0, large M_TRIM_THRESHOLD)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 1 << 30))


def _threads() -> int:
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def make_runner(
    module, backend: str = "auto", *, activation: str = "sigmoid"
) -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping a float32 ``(n, c, h, w)`` batch to probabilities.

    ``activation="sigmoid"``: per-pixel (or per-output) sigmoid of the network's logits, for a
    map of any ``h, w``. ``"softmax"``: a classifier's ``(n, classes)`` logits to class
    probabilities (only the batch size may vary).
    """
    _check_activation(activation)
    if backend in ("auto", "onnx"):
        try:
            return _onnx_runner(module, activation)
        except ImportError:
            if backend == "onnx":
                raise
            log.info("onnxruntime is not installed; running the network with PyTorch")
    return _torch_runner(module, activation)


def _check_activation(activation: str) -> None:
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")


def _torch_runner(module, activation: str = "sigmoid") -> Callable[[np.ndarray], np.ndarray]:
    import torch

    tune_malloc()
    module = module.eval()
    finish = _ACTIVATIONS[activation]

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return finish(module(torch.from_numpy(batch)).numpy())

    return run


def _export(module, examples: dict, dynamic_axes: dict) -> bytes:
    """``module`` as an ONNX graph with named inputs (``examples``: name -> example tensor)."""
    import torch

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # exporter deprecation chatter, not ours
        torch.onnx.export(
            module.eval(),
            tuple(examples.values()),
            buffer,
            input_names=list(examples),
            output_names=["logits"],
            dynamic_axes=dynamic_axes,
            dynamo=False,
        )
    return buffer.getvalue()


def _session(graph: bytes):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def _onnx_session(module, examples: dict, dynamic_axes: dict):
    """An ONNX Runtime session of ``module`` exported in memory with named inputs."""
    import onnxruntime  # noqa: F401  (ImportError before the export when it is missing)

    return _session(_export(module, examples, dynamic_axes))


def cache_dir() -> Path:
    """Where skysift caches derived files (``$SKYSIFT_CACHE_DIR``, else ``~/.cache/skysift``)."""
    if os.environ.get("SKYSIFT_CACHE_DIR"):
        return Path(os.environ["SKYSIFT_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "skysift"


def _cached_graph(path: Path) -> bytes | None:
    """The cached ONNX graph at ``path`` if it is intact (its recorded sha256 matches)."""
    import hashlib

    digest_file = path.with_suffix(".sha256")
    try:
        graph, expected = path.read_bytes(), digest_file.read_text().strip()
    except OSError:
        return None
    if hashlib.sha256(graph).hexdigest() != expected:
        log.warning("cached ONNX graph %s is corrupt; exporting it again", path)
        return None
    return graph


def _store_graph(path: Path, graph: bytes) -> None:
    """Cache ``graph`` atomically; a cache that cannot be written only costs a re-export."""
    import hashlib

    from skysift.io import atomic_write

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as tmp:
            tmp.write_bytes(graph)
        with atomic_write(path.with_suffix(".sha256")) as tmp:
            tmp.write_text(hashlib.sha256(graph).hexdigest() + "\n")
    except OSError as error:
        log.info("could not cache the ONNX graph in %s (%s); it is kept in memory", path, error)


def shipped_session(name: str, input_shapes: dict, dynamic_axes: dict, *, directory=None):
    """ONNX Runtime session of the shipped model ``name``, from the export cache.

    The weights are verified against the card first (as :func:`load_model` does); the graph is
    looked up in :func:`cache_dir` under the weights' sha256 and, on a miss, exported from the
    PyTorch module (with example inputs of ``input_shapes``: name -> shape) and cached.

    Raises
    ------
    ImportError
        ``onnxruntime`` is not installed.
    """
    import onnxruntime  # noqa: F401  (raise ImportError before any other work)

    from skysift.models.registry import load_card, load_model, verify_weights

    card = load_card(name, directory=directory)
    verify_weights(card, directory=directory)
    path = cache_dir() / "onnx" / f"{name}-{card['sha256'][:20]}-v{EXPORT_VERSION}.onnx"
    graph = _cached_graph(path)
    if graph is None:
        import torch

        module, _ = load_model(name, directory=directory)
        examples = {key: torch.zeros(shape) for key, shape in input_shapes.items()}
        graph = _export(module, examples, dynamic_axes)
        _store_graph(path, graph)
    return _session(graph)


def shipped_runner(
    name: str,
    input_shapes: dict | None = None,
    backend: str = "auto",
    *,
    directory=None,
    activation: str = "sigmoid",
) -> Callable[..., np.ndarray]:
    """A runner of the shipped model ``name`` (see :func:`make_runner`), torch-free if cached.

    Parameters
    ----------
    name : str
        Shipped model name.
    input_shapes : dict, optional
        Input name -> example shape, batch on axis 0, for a network of several inputs; the
        runner then takes the inputs by name (as :func:`make_multi_input_runner`'s). Default:
        one ``image`` input of ``(n, channels, h, w)`` with any ``n, h, w``; the runner takes
        the batch positionally (as :func:`make_runner`'s).
    backend : str
        ``auto``, ``onnx`` or ``torch``.
    activation : str
        For a single-input network: ``sigmoid`` (a map, any ``h, w``) or ``softmax`` (a
        classifier of fixed-size stamps; see :func:`make_runner`).
    """
    from skysift.models.registry import load_card, load_model

    _check_activation(activation)
    if backend in ("auto", "onnx"):
        try:
            if input_shapes is None:
                config = load_card(name, directory=directory)["architecture"]["config"]
                side = config.get("stamp", 64)
                shapes = {"image": (1, config.get("in_channels", 1), side, side)}
                axes = _IMAGE_AXES if activation == "sigmoid" else _CLASSIFIER_AXES
                session = shipped_session(name, shapes, axes, directory=directory)
                return _image_runner(session, activation)
            axes = {key: {0: "n"} for key in input_shapes} | {"logits": {0: "n"}}
            session = shipped_session(name, input_shapes, axes, directory=directory)
            return _named_runner(session)
        except ImportError:
            if backend == "onnx":
                raise
            log.info("onnxruntime is not installed; running the network with PyTorch")
    module, _ = load_model(name, directory=directory)
    if input_shapes is None:
        return _torch_runner(module, activation)
    return make_multi_input_runner(module, {}, "torch", input_names=list(input_shapes))


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


_ACTIVATIONS = {"sigmoid": _sigmoid, "softmax": _softmax}
_CLASSIFIER_AXES = {"image": {0: "n"}, "logits": {0: "n"}}


def _image_runner(session, activation: str = "sigmoid") -> Callable[[np.ndarray], np.ndarray]:
    finish = _ACTIVATIONS[activation]

    def run(batch: np.ndarray) -> np.ndarray:
        return finish(session.run(None, {"image": batch})[0])

    return run


def _named_runner(session) -> Callable[..., np.ndarray]:
    def run(**inputs: np.ndarray) -> np.ndarray:
        return _sigmoid(session.run(None, inputs)[0])

    return run


def _onnx_runner(module, activation: str = "sigmoid") -> Callable[[np.ndarray], np.ndarray]:
    import torch

    side = getattr(module.config, "stamp", 64)
    example = torch.zeros(1, module.config.in_channels, side, side)
    axes = _IMAGE_AXES if activation == "sigmoid" else _CLASSIFIER_AXES
    return _image_runner(_onnx_session(module, {"image": example}, axes), activation)


def make_multi_input_runner(
    module, examples: dict, backend: str = "auto", *, input_names: list[str] | None = None
) -> Callable[..., np.ndarray]:
    """Like :func:`make_runner` for a network of several inputs, batched on axis 0.

    ``examples`` maps input names, in ``forward`` order, to example tensors; the returned
    function takes float32 arrays by those names and gives sigmoid probabilities. With the
    torch backend ``input_names`` may stand in for ``examples``.
    """
    if backend in ("auto", "onnx"):
        try:
            axes = {name: {0: "n"} for name in examples} | {"logits": {0: "n"}}
            return _named_runner(_onnx_session(module, examples, axes))
        except ImportError:
            if backend == "onnx":
                raise
            log.info("onnxruntime is not installed; running the network with PyTorch")
    import torch

    tune_malloc()
    module = module.eval()
    names = input_names or list(examples)

    def run_torch(**inputs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tensors = [torch.from_numpy(inputs[name]) for name in names]
            return torch.sigmoid(module(*tensors)).numpy()

    return run_torch
