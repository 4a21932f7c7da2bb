"""Local correlation between two feature maps, with interchangeable kernels.

MotionSqueeze compares every position of frame t with a window of positions of
frame t+1. The authors computed this with a compiled CUDA extension; here the
default is pure PyTorch, so it runs on any device and is differentiable:

- ``'reference'``: the plain formulation, one multiply-and-sum per
  displacement (:func:`local_correlation_reference`). Slow and memory-hungry
  in training, but obviously right; the other kernels are tested against it,
  and it is what exporters and compilers see under ``'auto'``.
- ``'fast'``: strip GEMMs in a custom autograd Function that saves only its
  inputs (:mod:`.fast_correlation`); any device.
- ``'mmcv'``: mmcv's ``Correlation`` CUDA op (full mmcv only, CUDA tensors).
- ``'triton'``: a Triton kernel (:mod:`.triton_correlation`; CUDA tensors,
  ``triton`` installed).
- ``'auto'`` (the default): on CUDA the first of mmcv, Triton, fast that is
  installed and passes a one-time check against ``'fast'`` on a small input
  (a kernel that fails it is skipped with a warning); on other devices
  ``'fast'``; ``'reference'`` during ONNX export, ``torch.compile`` and
  :func:`plain_kernels` (TorchScript export), where a custom autograd Function is not wanted.

Choose per call (``impl=``), per module (``MotionSqueeze(correlation_impl=)``,
i.e. ``ms_cfg=dict(correlation_impl='reference')`` in a config), or for the
whole process with :func:`set_default_correlation_impl`.
"""
import contextlib
import importlib.util
import warnings
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from .fast_correlation import FastLocalCorrelation

IMPLEMENTATIONS = ('auto', 'reference', 'fast', 'mmcv', 'triton')

_default_impl = 'auto'
_force_plain_kernels = False
#: (device type, index) -> the kernel 'auto' settled on for that device.
_auto_choice: Dict[Tuple[str, Optional[int]], str] = {}


def local_correlation(f1: torch.Tensor,
                      f2: torch.Tensor,
                      max_displacement: int,
                      impl: Optional[str] = None) -> torch.Tensor:
    """Dot products of ``f1`` with ``f2`` over a square window of displacements.

    Args:
        f1 (Tensor): (B, C, H, W) features of frame t.
        f2 (Tensor): (B, C, H, W) features of frame t+1.
        max_displacement (int): d; displacements -d..d on each axis.
        impl (str, optional): one of :data:`IMPLEMENTATIONS`; ``None`` uses
            the process default (``'auto'`` unless changed with
            :func:`set_default_correlation_impl`).

    Returns:
        Tensor: (B, (2d+1)^2, H, W). Channel ``(dy + d) * (2d + 1) + (dx + d)``
        holds ``sum_c f1[:, c, y, x] * f2[:, c, y + dy, x + dx]``, zero where
        ``(y + dy, x + dx)`` falls outside the map.
    """
    _check_inputs(f1, f2, max_displacement)
    name = resolve_correlation_impl(impl, f1)
    return _KERNELS[name](f1, f2, max_displacement)


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
    if max_displacement < 0:
        raise ValueError(
            f'max_displacement must be >= 0, got {max_displacement}')


def set_default_correlation_impl(impl: str) -> None:
    """Set the kernel ``local_correlation`` uses when ``impl`` is None.

    Args:
        impl (str): one of :data:`IMPLEMENTATIONS`.
    """
    global _default_impl
    _check_impl_name(impl)
    _default_impl = impl


def get_default_correlation_impl() -> str:
    """The kernel name ``local_correlation`` uses when ``impl`` is None."""
    return _default_impl


def _check_impl_name(impl: str) -> None:
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f'unknown correlation impl {impl!r}; choose one of '
                         f'{IMPLEMENTATIONS}')


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


def resolve_correlation_impl(impl: Optional[str],
                             tensor: torch.Tensor) -> str:
    """The kernel that ``local_correlation(impl=impl)`` runs for ``tensor``.

    Args:
        impl (str, optional): a name of :data:`IMPLEMENTATIONS`, or None for
            the process default.
        tensor (Tensor): an input (its device decides).

    Returns:
        str: ``'reference'``, ``'fast'``, ``'mmcv'`` or ``'triton'``.

    Raises:
        ValueError: for an unknown name.
        RuntimeError: when ``'mmcv'`` or ``'triton'`` is asked for and cannot
            run (not installed, or not a CUDA tensor).
    """
    impl = _default_impl if impl is None else impl
    _check_impl_name(impl)
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
    return impl


def _require_cuda(impl: str, tensor: torch.Tensor) -> None:
    if tensor.device.type != 'cuda':
        raise RuntimeError(
            f"correlation impl {impl!r} runs only on CUDA tensors, got a "
            f"tensor on {tensor.device}; use impl='fast' (any device)")


def _resolve_auto(tensor: torch.Tensor) -> str:
    if is_exporting_or_compiling():
        return 'reference'
    if tensor.device.type != 'cuda':
        return 'fast'
    key = (tensor.device.type, tensor.device.index)
    if key not in _auto_choice:
        _auto_choice[key] = _first_working_cuda_kernel(tensor.device)
    return _auto_choice[key]


@contextlib.contextmanager
def plain_kernels():
    """Within the block, MotionSqueeze uses plain PyTorch ops only: the
    reference correlation and a plain Gaussian soft-argmax, as during ONNX
    export. For ``torch.jit.trace`` (TorchScript export), which cannot record
    an autograd Function. Not applied to every trace: mmengine's FLOP counter
    traces too, and counts the correlation by its Function node."""
    global _force_plain_kernels
    previous, _force_plain_kernels = _force_plain_kernels, True
    try:
        yield
    finally:
        _force_plain_kernels = previous


def is_exporting_or_compiling() -> bool:
    """True during ONNX export, torch.compile and :func:`plain_kernels`:
    then custom autograd Functions give way to plain ops."""
    compiling = getattr(torch.compiler, 'is_compiling', lambda: False)()
    return bool(_force_plain_kernels or compiling
                or torch.onnx.is_in_onnx_export())


def _first_working_cuda_kernel(device: torch.device) -> str:
    """mmcv, then Triton, then fast: the first installed one that agrees
    with 'fast' (forward and both gradients) on a small random input."""
    candidates = []
    if mmcv_correlation_available():
        candidates.append('mmcv')
    if triton_available():
        candidates.append('triton')
    for name in candidates:
        try:
            error = kernel_error_vs_fast(name, device)
        except Exception as exc:  # a kernel that cannot even run is skipped
            warnings.warn(f"local_correlation: the {name!r} kernel failed on "
                          f"{device} ({type(exc).__name__}: {exc}); trying "
                          'the next one')
            continue
        if error <= 1e-4:
            return name
        warnings.warn(f"local_correlation: the {name!r} kernel differs from "
                      f"'fast' by {error:.3g} on {device}; not using it")
    return 'fast'


def kernel_error_vs_fast(impl: str,
                         device: torch.device,
                         shape=(2, 8, 9, 11),
                         max_displacement: int = 3) -> float:
    """Largest absolute difference, forward and both gradients, between
    ``impl`` and ``'fast'`` on random float32 maps of ``shape``."""
    generator = torch.Generator().manual_seed(0)
    batch, _, height, width = shape
    side = 2 * max_displacement + 1
    f1_value, f2_value, grad_out = (
        torch.randn(size, generator=generator).to(device)
        for size in (shape, shape, (batch, side * side, height, width)))
    results = []
    for name in (impl, 'fast'):
        f1 = f1_value.clone().requires_grad_()
        f2 = f2_value.clone().requires_grad_()
        out = _KERNELS[name](f1, f2, max_displacement)
        grads = torch.autograd.grad(out, (f1, f2), grad_out)
        results.append((out.detach(), ) + grads)
    return max(
        float((a - b).abs().max()) for a, b in zip(results[0], results[1]))


def _fast(f1: torch.Tensor, f2: torch.Tensor, d: int) -> torch.Tensor:
    return FastLocalCorrelation.apply(f1, f2, d)


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


_KERNELS: Dict[str, Callable[[torch.Tensor, torch.Tensor, int],
                             torch.Tensor]] = {
                                 'reference': local_correlation_reference,
                                 'fast': _fast,
                                 'mmcv': _mmcv,
                                 'triton': _triton,
                             }
