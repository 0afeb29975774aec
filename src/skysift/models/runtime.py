"""Run a network on numpy batches, as fast as this CPU allows.

ONNX Runtime ran every skysift network fastest on the reference machine (2 cores, AVX2), so
:func:`make_runner` exports the PyTorch module to ONNX in memory (once per process) and runs it
there; without ``onnxruntime`` it falls back to eager PyTorch in inference mode, after setting
glibc's malloc to keep freed memory (eager PyTorch otherwise spends most of its time in page
faults). Runners return probabilities (the sigmoid of the network's logits).
"""

from __future__ import annotations

import ctypes
import functools
import io
import logging
import os
import warnings
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["make_multi_input_runner", "make_runner", "tune_malloc"]


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


def make_runner(module, backend: str = "auto") -> Callable[[np.ndarray], np.ndarray]:
    """A function mapping a float32 ``(n, c, h, w)`` batch to sigmoid probabilities."""
    if backend in ("auto", "onnx"):
        try:
            return _onnx_runner(module)
        except ImportError:
            if backend == "onnx":
                raise
            log.info("onnxruntime is not installed; running the network with PyTorch")
    return _torch_runner(module)


def _torch_runner(module) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    tune_malloc()
    module = module.eval()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return torch.sigmoid(module(torch.from_numpy(batch))).numpy()

    return run


def _onnx_session(module, examples: dict, dynamic_axes: dict):
    """An ONNX Runtime session of ``module`` exported in memory with named inputs."""
    import onnxruntime
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
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = _threads()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(
        buffer.getvalue(), options, providers=["CPUExecutionProvider"]
    )


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def _onnx_runner(module) -> Callable[[np.ndarray], np.ndarray]:
    import torch

    example = torch.zeros(1, module.config.in_channels, 64, 64)
    axes = {"image": {0: "n", 2: "h", 3: "w"}, "logits": {0: "n", 2: "h", 3: "w"}}
    session = _onnx_session(module, {"image": example}, axes)

    def run(batch: np.ndarray) -> np.ndarray:
        return _sigmoid(session.run(None, {"image": batch})[0])

    return run


def make_multi_input_runner(
    module, examples: dict, backend: str = "auto"
) -> Callable[..., np.ndarray]:
    """Like :func:`make_runner` for a network of several inputs, batched on axis 0.

    ``examples`` maps input names, in ``forward`` order, to example tensors; the returned
    function takes float32 arrays by those names and gives sigmoid probabilities.
    """
    if backend in ("auto", "onnx"):
        try:
            axes = {name: {0: "n"} for name in examples} | {"logits": {0: "n"}}
            session = _onnx_session(module, examples, axes)

            def run_onnx(**inputs: np.ndarray) -> np.ndarray:
                return _sigmoid(session.run(None, inputs)[0])

            return run_onnx
        except ImportError:
            if backend == "onnx":
                raise
            log.info("onnxruntime is not installed; running the network with PyTorch")
    import torch

    tune_malloc()
    module = module.eval()

    def run_torch(**inputs: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            tensors = [torch.from_numpy(inputs[name]) for name in examples]
            return torch.sigmoid(module(*tensors)).numpy()

    return run_torch
