"""What MotionSqueeze's kernels need to know about exporters and compilers.

:func:`is_exporting_or_compiling` is the one place that decides when the
eager autograd Functions and compiled kernels give way, and
:func:`is_exporting` whether to plain ops (exporters) or to ``msnet::``
custom ops (torch.compile alone, :func:`is_compiling_not_exporting`);
:func:`static_sizes` reads the sizes a graph fixes anyway (channels, height,
width) as constants, so that ``torch.jit.trace`` and the TorchScript-based
ONNX exporter do not record a chain of shape ops for each reshape, and
``torch.compile`` does not carry them as symbols.
"""
import warnings
from typing import Tuple

import torch


def is_exporting_or_compiling() -> bool:
    """True while an exporter or compiler traces the model: torch.compile and
    torch.export (dynamo, strict or not, also under the dynamo ONNX
    exporter), the TorchScript-based ONNX exporter and ``torch.jit.trace``
    (also mmengine's FLOP counter). Then autograd Functions and compiled
    kernels give way to plain ops."""
    return bool(torch.compiler.is_compiling() or torch.jit.is_tracing()
                or torch.onnx.is_in_onnx_export())


def is_exporting() -> bool:
    """True while an exporter traces the model: ``torch.export`` (also
    under the dynamo ONNX exporter), the TorchScript-based ONNX exporter or
    ``torch.jit.trace``. Exported graphs keep standard operators."""
    return bool(torch.compiler.is_exporting() or torch.jit.is_tracing()
                or torch.onnx.is_in_onnx_export())


def is_compiling_not_exporting() -> bool:
    """True while torch.compile traces the model and no exporter does: then
    MotionSqueeze's eager kernels run as ``msnet::`` custom ops, which
    inductor calls as they are."""
    return torch.compiler.is_compiling() and not is_exporting()


def static_sizes(tensor: torch.Tensor, first_dim: int = 1) -> Tuple[int, ...]:
    """``tensor.shape[first_dim:]`` as Python ints.

    Under ``torch.jit.trace`` sizes are traced values, and under
    ``torch.compile`` with dynamic shapes (``dynamic=True``, or dynamo's
    automatic dynamic shapes once a size changed between calls) they are
    symbols; here they become constants of the graph instead (dynamo then
    guards on them and compiles again for other sizes). Use only for
    dimensions that a graph fixes, never the batch dimension: reshape with
    -1 there. Index arithmetic on symbolic map sizes makes inductor's
    simplifier run for minutes.
    """
    if not torch.jit.is_tracing():  # dynamo cannot trace catch_warnings
        return tuple(int(size) for size in tensor.shape[first_dim:])
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        return tuple(int(size) for size in tensor.shape[first_dim:])
