"""Local correlation between two feature maps, and the choice of its kernel.

MotionSqueeze compares every position of frame t with a window of positions of
frame t+1. The authors computed this with a compiled CUDA extension; here the
default is pure PyTorch, so it runs on any device and is differentiable.
The kernel is chosen in one place, ``local_correlation(impl=...)``, which
MotionSqueeze calls with its ``correlation_impl`` argument (so a config sets
it: ``ms_cfg=dict(correlation_impl='reference')``):

- ``'fast'``: the strip-GEMM formulation (:mod:`.fast_correlation`), any
  device. Eagerly it runs as :class:`FastLocalCorrelation`, an autograd
  Function that works on chunks of clips and saves only its inputs; under
  torch.compile the same kernel runs as the custom op
  ``msnet::local_correlation`` (:mod:`.kernel_ops`), which inductor calls
  as it is; under an exporter the same formulation runs as plain ops
  (:func:`strip_correlation`), a handful of standard nodes in any graph.
- ``'reference'``: the plain loop, one product per displacement
  (:func:`local_correlation_reference`). Slow and memory-hungry, but
  obviously right: the tests compare every kernel with it.
- ``'mmcv'``: mmcv's ``Correlation`` CUDA op (full mmcv, CUDA tensors).
- ``'triton'``: a Triton kernel (:mod:`.triton_correlation`; CUDA tensors,
  ``triton`` installed).
- ``'auto'`` (the default): on CUDA the first of mmcv, Triton that is
  installed and agrees with the plain formulation on a small input on that
  device (checked once per device; a kernel that fails is skipped with a
  warning), else ``'fast'``; on other devices ``'fast'``.

Exporters and compilers cannot see into a compiled kernel or an autograd
Function, so while one runs every choice but ``'reference'`` gives the
strip formulation (same numbers): the custom op under torch.compile, plain
ops under an exporter.
"""
import importlib.util
import warnings
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from .fast_correlation import (FastLocalCorrelation, default_chunk_elements,
                               strip_correlation)
from .kernel_ops import local_correlation_op
from .tracing import is_compiling_not_exporting, is_exporting

#: (device type, index) -> the kernel 'auto' settled on for that device.
_auto_choice: Dict[Tuple[str, Optional[int]], str] = {}


def local_correlation(f1: torch.Tensor,
                      f2: torch.Tensor,
                      max_displacement: int,
                      impl: str = 'auto',
                      chunk_elements: Optional[int] = None) -> torch.Tensor:
    """Dot products of ``f1`` with ``f2`` over a square window of displacements.

    Args:
        f1 (Tensor): (B, C, H, W) features of frame t.
        f2 (Tensor): (B, C, H, W) features of frame t+1.
        max_displacement (int): d; displacements -d..d on each axis.
        impl (str): one of :data:`IMPLEMENTATIONS` (module doc).
        chunk_elements (int, optional): memory budget of the eager
            ``'fast'`` kernel, values per chunk of clips (a chunk has at
            least one clip); None: the device's default
            (:func:`.fast_correlation.default_chunk_elements`).

    Returns:
        Tensor: (B, (2d+1)^2, H, W). Channel ``(dy + d) * (2d + 1) + (dx + d)``
        holds ``sum_c f1[:, c, y, x] * f2[:, c, y + dy, x + dx]``, zero where
        ``(y + dy, x + dx)`` falls outside the map.
    """
    _check_inputs(f1, f2, max_displacement)
    _, kernel = _select_kernel(impl, f1)
    if kernel in (_fast, _fast_op):
        return kernel(f1, f2, max_displacement, chunk_elements)
    return kernel(f1, f2, max_displacement)


def local_correlation_reference(f1: torch.Tensor, f2: torch.Tensor,
                                max_displacement: int) -> torch.Tensor:
    """The plain formulation of :func:`local_correlation` (same contract).

    One product of ``f1`` with a shifted ``f2`` per displacement, summed over
    channels; autograd records every product, so training keeps (2d+1)^2
    (B, H, W) sums and their inputs' views alive.
    """
    _check_inputs(f1, f2, max_displacement)
    d = max_displacement
    height, width = f1.shape[-2:]
    f2_padded = F.pad(f2, (d, d, d, d))
    correlations = []
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            f2_shifted = f2_padded[:, :, d + dy:d + dy + height,
                                   d + dx:d + dx + width]
            correlations.append((f1 * f2_shifted).sum(dim=1))
    return torch.stack(correlations, dim=1)


def _check_inputs(f1: torch.Tensor, f2: torch.Tensor,
                  max_displacement: int) -> None:
    if f1.dim() != 4 or f1.shape != f2.shape:
        raise ValueError('local_correlation expects two (B, C, H, W) maps of '
                         f'the same shape, got {tuple(f1.shape)} and '
                         f'{tuple(f2.shape)}')
    if f1.dtype != f2.dtype or f1.device != f2.device:
        raise ValueError('local_correlation expects both maps on one device '
                         f'with one dtype, got {f1.dtype} on {f1.device} and '
                         f'{f2.dtype} on {f2.device}')
    if not isinstance(max_displacement, int) or max_displacement < 0:
        raise ValueError('max_displacement must be an int >= 0, got '
                         f'{max_displacement!r}')


def check_impl_name(impl) -> None:
    """Raise ValueError unless ``impl`` is one of :data:`IMPLEMENTATIONS`
    (MotionSqueeze checks its ``correlation_impl`` with it when built)."""
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f'correlation_impl must be one of '
                         f'{IMPLEMENTATIONS}, got {impl!r}')


def mmcv_correlation_available() -> bool:
    """True when full mmcv (with its compiled ops) is installed."""
    try:
        from mmcv.ops.correlation import CorrelationFunction  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def triton_available() -> bool:
    """True when the ``triton`` package can be imported."""
    return importlib.util.find_spec('triton') is not None


def resolve_correlation_impl(impl: str, tensor: torch.Tensor) -> str:
    """The kernel that ``local_correlation(impl=impl)`` runs for ``tensor``.

    Args:
        impl (str): a name of :data:`IMPLEMENTATIONS`.
        tensor (Tensor): an input (its device decides).

    Returns:
        str: ``'reference'``, ``'fast'``, ``'mmcv'`` or ``'triton'``; always
        ``'fast'`` or ``'reference'`` while exporting or compiling.

    Raises:
        ValueError: for an unknown name.
        RuntimeError: when ``'mmcv'`` or ``'triton'`` is asked for and cannot
            run (not installed, or not a CUDA tensor).
    """
    return _select_kernel(impl, tensor)[0]


def _select_kernel(impl: str, tensor: torch.Tensor) -> Tuple[str, Callable]:
    """The name :func:`resolve_correlation_impl` returns and the function
    that computes it: while compiling or exporting (the one place this
    module asks), every name but ``'reference'`` gives ``'fast'``: the
    custom op under torch.compile (:func:`_fast_op`), plain ops under an
    exporter (:func:`strip_correlation`)."""
    check_impl_name(impl)
    if impl == 'reference':
        return impl, KERNELS[impl]
    if is_compiling_not_exporting():
        return 'fast', _fast_op
    if is_exporting():
        return 'fast', strip_correlation
    if impl == 'mmcv':
        if not mmcv_correlation_available():
            raise RuntimeError(
                "correlation impl 'mmcv' needs full mmcv with its compiled "
                'ops (mmcv-lite has none); install mmcv 2.1.x for your CUDA '
                "and torch, or use impl='fast'")
        _require_cuda('mmcv', tensor)
    elif impl == 'triton':
        if not triton_available():
            raise RuntimeError("correlation impl 'triton' needs the triton "
                               "package; install it or use impl='fast'")
        _require_cuda('triton', tensor)
    elif impl == 'auto':
        impl = _resolve_auto(tensor)
    return impl, KERNELS[impl]


def _require_cuda(impl: str, tensor: torch.Tensor) -> None:
    if tensor.device.type != 'cuda':
        raise RuntimeError(
            f"correlation impl {impl!r} runs only on CUDA tensors, got a "
            f"tensor on {tensor.device}; use impl='fast' (any device)")


def _resolve_auto(tensor: torch.Tensor) -> str:
    if tensor.device.type != 'cuda':
        return 'fast'
    key = (tensor.device.type, tensor.device.index)
    if key not in _auto_choice:
        _auto_choice[key] = _first_working_cuda_kernel(tensor.device)
    return _auto_choice[key]


def _first_working_cuda_kernel(device: torch.device) -> str:
    """mmcv, then Triton, then fast: the first installed compiled kernel
    that agrees with the plain formulation (forward and both gradients) on
    a small random input on ``device``."""
    candidates = []
    if mmcv_correlation_available():
        candidates.append('mmcv')
    if triton_available():
        candidates.append('triton')
    for name in candidates:
        try:
            error = kernel_error_vs_plain(name, device)
        except Exception as exc:  # a kernel that cannot even run is skipped
            warnings.warn(f"local_correlation: the {name!r} kernel failed on "
                          f"{device} ({type(exc).__name__}: {exc}); trying "
                          'the next one')
            continue
        if error <= 1e-4:
            return name
        warnings.warn(f"local_correlation: the {name!r} kernel differs from "
                      f"the plain formulation by {error:.3g} on {device}; "
                      'not using it')
    return 'fast'


def kernel_error_vs_plain(impl: str,
                          device: torch.device,
                          shape=(2, 8, 9, 11),
                          max_displacement: int = 3) -> float:
    """Largest absolute difference, forward and both gradients, between the
    eager kernel ``impl`` and :func:`strip_correlation` (plain ops, autograd)
    on random float32 maps of ``shape`` on ``device``."""
    generator = torch.Generator().manual_seed(0)
    batch, _, height, width = shape
    side = 2 * max_displacement + 1
    f1_value, f2_value, grad_out = (
        torch.randn(size, generator=generator).to(device)
        for size in (shape, shape, (batch, side * side, height, width)))
    kernels = (KERNELS[impl], strip_correlation)
    results = []
    for kernel in kernels:
        f1 = f1_value.clone().requires_grad_()
        f2 = f2_value.clone().requires_grad_()
        out = kernel(f1, f2, max_displacement)
        grads = torch.autograd.grad(out, (f1, f2), grad_out)
        results.append((out.detach(), ) + grads)
    return max(
        float((a - b).abs().max()) for a, b in zip(results[0], results[1]))


def _mmcv(f1: torch.Tensor, f2: torch.Tensor, d: int) -> torch.Tensor:
    """mmcv's ``CorrelationFunction``: kernel_size 1, no padding, stride 1.

    It returns (B, 2d+1, 2d+1, H, W) with ``[:, dy + d, dx + d]`` the
    un-normalised dot product of f1 at p with f2 at p + (dy, dx), zero
    outside: our channel order once the two window axes are merged.
    """
    from mmcv.ops.correlation import CorrelationFunction
    batch, _, height, width = f1.shape
    side = 2 * d + 1
    out = CorrelationFunction.apply(f1.contiguous(), f2.contiguous(), 1, d, 1,
                                    0, 1, 1)
    return out.reshape(batch, side * side, height, width)


def _triton(f1: torch.Tensor, f2: torch.Tensor, d: int) -> torch.Tensor:
    from .triton_correlation import TritonLocalCorrelation
    return TritonLocalCorrelation.apply(f1, f2, d)


def _fast(f1: torch.Tensor, f2: torch.Tensor, d: int,
          chunk_elements: Optional[int] = None) -> torch.Tensor:
    """:class:`FastLocalCorrelation` with a memory budget of
    ``chunk_elements`` values per chunk of clips (None: the device's
    default)."""
    if chunk_elements is None:
        chunk_elements = default_chunk_elements(f1.device)
    return FastLocalCorrelation.apply(f1, f2, d, chunk_elements)


def _fast_op(f1: torch.Tensor, f2: torch.Tensor, d: int,
             chunk_elements: Optional[int] = None) -> torch.Tensor:
    """:func:`_fast` as the custom op ``msnet::local_correlation``
    (:mod:`.kernel_ops`), which torch.compile traces."""
    if chunk_elements is None:
        chunk_elements = default_chunk_elements(f1.device)
    return local_correlation_op(f1, f2, d, chunk_elements)


#: The kernels by name, run eagerly: (f1, f2, d) -> (B, (2d+1)^2, H, W).
KERNELS: Dict[str, Callable] = dict(
    fast=_fast, reference=local_correlation_reference, mmcv=_mmcv,
    triton=_triton)
#: What ``impl`` may be: a kernel's name, or ``'auto'`` (module doc).
IMPLEMENTATIONS = ('auto', ) + tuple(KERNELS)
