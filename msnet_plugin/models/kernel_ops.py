"""MotionSqueeze's eager kernels as custom ops, for torch.compile training.

Traced by ``torch.compile`` where autograd runs (training), the correlation
and the kernel soft-argmax are two ops of the ``msnet`` namespace, which
inductor calls as they are instead of generating code for their plain
formulations (which autograd would make keep full-size temporaries):

- ``msnet::local_correlation(f1, f2, max_displacement, chunk_elements)``:
  :class:`~.fast_correlation.FastLocalCorrelation`'s kernel, (B, C, H, W)
  twice -> (B, (2d+1)^2, H, W);
- ``msnet::gaussian_soft_argmax(correlation, best_index, patch_size, sigma,
  temperature, chunk_elements)``: :class:`~.soft_argmax.GaussianSoftArgmax`'s
  kernel, (B, P*P, H, W) and its (B, 1, H, W) argmax -> the displacement
  (B, 2, H, W) and the softmax's sums (B, 1, H, W), which its backward
  needs (the confidence is a gather, traced as one).

Each has a fake implementation (the result's shape, dtype and strides) and
an autograd formula whose backward is a second op running the eager
kernel's backward; like the autograd Functions they save only their inputs
(and the soft-argmax its results), and are not twice differentiable.
:func:`.tracing.is_compiling_not_exporting` decides where they run;
exporters keep plain operators, and in inference the whole module is one op
(:mod:`.compiled_inference`).
"""
from typing import Tuple

import torch

from .fast_correlation import _backward as correlation_backward
from .fast_correlation import _forward as correlation_forward
from .soft_argmax import (gaussian_soft_argmax_backward,
                          gaussian_soft_argmax_forward)

NAMESPACE = 'msnet'


@torch.library.custom_op(f'{NAMESPACE}::local_correlation', mutates_args=())
def local_correlation_op(f1: torch.Tensor, f2: torch.Tensor,
                         max_displacement: int,
                         chunk_elements: int) -> torch.Tensor:
    """(B, C, H, W) twice -> (B, (2d+1)^2, H, W), contiguous."""
    with torch.autocast(f1.device.type, enabled=False):
        return correlation_forward(f1, f2, max_displacement, chunk_elements)


@local_correlation_op.register_fake
def _(f1, f2, max_displacement, chunk_elements):
    batch, _, height, width = f1.shape
    side = 2 * max_displacement + 1
    return f1.new_empty(batch, side * side, height, width)


@torch.library.custom_op(f'{NAMESPACE}::local_correlation_backward',
                         mutates_args=())
def local_correlation_backward_op(
        grad_output: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor,
        max_displacement: int, chunk_elements: int, needs_grad_f1: bool,
        needs_grad_f2: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """The gradients of f1 and f2 (each (B, C, H, W), or empty where not
    needed)."""
    with torch.autocast(f1.device.type, enabled=False):
        grad_f1, grad_f2 = correlation_backward(
            grad_output, f1, f2, max_displacement, chunk_elements,
            (needs_grad_f1, needs_grad_f2))
    return (f1.new_empty(0) if grad_f1 is None else grad_f1,
            f2.new_empty(0) if grad_f2 is None else grad_f2)


@local_correlation_backward_op.register_fake
def _(grad_output, f1, f2, max_displacement, chunk_elements, needs_grad_f1,
      needs_grad_f2):
    return (f1.new_empty(f1.shape if needs_grad_f1 else 0),
            f2.new_empty(f2.shape if needs_grad_f2 else 0))


def _correlation_setup_context(ctx, inputs, output):
    f1, f2, max_displacement, chunk_elements = inputs
    ctx.save_for_backward(f1, f2)
    ctx.settings = (max_displacement, chunk_elements)


def _correlation_backward(ctx, grad_output):
    f1, f2 = ctx.saved_tensors
    needs_f1, needs_f2 = ctx.needs_input_grad[:2]
    grad_f1, grad_f2 = local_correlation_backward_op(
        grad_output, f1, f2, *ctx.settings, needs_f1, needs_f2)
    return (grad_f1 if needs_f1 else None, grad_f2 if needs_f2 else None,
            None, None)


local_correlation_op.register_autograd(
    _correlation_backward, setup_context=_correlation_setup_context)


@torch.library.custom_op(f'{NAMESPACE}::gaussian_soft_argmax',
                         mutates_args=())
def gaussian_soft_argmax_op(
        correlation: torch.Tensor, best_index: torch.Tensor,
        patch_size: int, sigma: float, temperature: float,
        chunk_elements: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """(B, P*P, H, W) correlation and its (B, 1, H, W) argmax -> the
    displacement (B, 2, H, W) and the softmax's sums (B, 1, H, W)."""
    return gaussian_soft_argmax_forward(correlation, best_index, patch_size,
                                        sigma, temperature, chunk_elements)


@gaussian_soft_argmax_op.register_fake
def _(correlation, best_index, patch_size, sigma, temperature,
      chunk_elements):
    batch, _, height, width = correlation.shape
    dtype = torch.promote_types(correlation.dtype, torch.float32)
    return (correlation.new_empty(batch, 2, height, width),
            correlation.new_empty(batch, 1, height, width, dtype=dtype))


@torch.library.custom_op(f'{NAMESPACE}::gaussian_soft_argmax_backward',
                         mutates_args=())
def gaussian_soft_argmax_backward_op(
        grad_displacement: torch.Tensor, correlation: torch.Tensor,
        best_index: torch.Tensor, displacement: torch.Tensor,
        totals: torch.Tensor, patch_size: int, sigma: float,
        temperature: float, chunk_elements: int) -> torch.Tensor:
    """The correlation's gradient through the displacement, shaped like
    the correlation."""
    return gaussian_soft_argmax_backward(grad_displacement, correlation,
                                         best_index, displacement, totals,
                                         patch_size, sigma, temperature,
                                         chunk_elements)


@gaussian_soft_argmax_backward_op.register_fake
def _(grad_displacement, correlation, best_index, displacement, totals,
      patch_size, sigma, temperature, chunk_elements):
    return torch.empty_like(correlation)


def _soft_argmax_setup_context(ctx, inputs, output):
    correlation, best_index = inputs[:2]
    ctx.save_for_backward(correlation, best_index, *output)
    ctx.settings = inputs[2:]


def _soft_argmax_backward(ctx, grad_displacement, grad_totals):
    grad_correlation = gaussian_soft_argmax_backward_op(
        grad_displacement, *ctx.saved_tensors, *ctx.settings)
    return grad_correlation, None, None, None, None, None


gaussian_soft_argmax_op.register_autograd(
    _soft_argmax_backward, setup_context=_soft_argmax_setup_context)
