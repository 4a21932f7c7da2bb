"""A fast, memory-lean local correlation for any device, in pure PyTorch.

The plain formulation (``local_correlation_reference``) multiplies ``f1`` by
(2d+1)^2 shifted copies of ``f2`` and lets autograd record every product. Here
the same numbers come from matrix products restricted to the window:

- rows of the maps are grouped in strips of ``G`` rows (G divides H, see
  :func:`strip_rows_for`); a strip of ``f1``
  (G*W positions x C channels) is multiplied by the block of ``f2`` rows it
  can reach (G + 2d padded rows x (W + 2d) padded columns), one GEMM per
  strip, all strips of one clip in one ``bmm``;
- a strided view picks the (2d+1)^2 window entries of every position out of
  each strip's product (the product also holds pairs outside the window,
  about (G + 2d)(W + 2d) / (2d+1)^2 times the useful work: 3 times for the
  paper's 28x28 maps with d = 7, G = 4, traded for GEMM speed);
- the autograd Function saves only ``f1`` and ``f2``; its backward builds the
  same strips from the output gradient and accumulates ``grad_f1`` and
  ``grad_f2`` with two more GEMMs per clip, never holding more than one
  clip's strip products.

Work is done clip by clip (one ``B`` index at a time), so the temporaries are
one clip's strip products, (H/G) x G*W x (G+2d)(W+2d) values (2.4 MB at
28x28, d = 7), whatever the batch size.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

#: Preferred rows per strip: at 28x28 with d = 7, 4 rows keep the wasted
#: products near 3x while the GEMMs (4*W x C times C x (4 + 2d)(W + 2d)) are
#: large enough to run fast. The strip height used is the divisor of H
#: closest to it, so that strips tile the map exactly.
PREFERRED_STRIP_ROWS = 4


def strip_rows_for(height: int) -> int:
    """The divisor of ``height`` closest to PREFERRED_STRIP_ROWS (larger wins
    a tie)."""
    divisors = [g for g in range(1, height + 1) if height % g == 0]
    return min(divisors,
               key=lambda g: (abs(g - PREFERRED_STRIP_ROWS), -g))


def _window_view(strips: torch.Tensor, height: int, width: int,
                 max_disp: int) -> torch.Tensor:
    """The window entries of one clip's strip products, as a strided view.

    ``strips`` is (S, G*W, N): strip s, row ``g*W + x`` for position
    (y, x) = (s*G + g, x), column ``r*(W + 2d) + c`` for padded f2 row
    s*G + r and padded column c, N = (G + 2d)(W + 2d). Displacement
    (dy, dx) of position (y, x) is in column ``(g + dy + d)*(W + 2d) + x +
    dx + d``.

    Returns:
        Tensor: a (P, P, S, G, W) view (P = 2d + 1) whose
        ``[dy + d, dx + d, s, g, x]`` is that entry, i.e. the output's
        (P*P, H, W) layout with H split into (S, G).
    """
    num_strips, strip_width, columns = strips.shape
    strip_rows = strip_width // width
    side = 2 * max_disp + 1
    padded_width = width + 2 * max_disp
    return strips.as_strided(
        (side, side, num_strips, strip_rows, width),
        (padded_width, 1, strip_width * columns,
         width * columns + padded_width, columns + 1))


def _clip_strips(f1_clip: torch.Tensor, f2_clip: torch.Tensor, max_disp: int,
                 strip_rows: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One clip's strips of f1 and the f2 windows they reach, as GEMM operands.

    Args:
        f1_clip, f2_clip (Tensor): (C, H, W) features of one clip; H is a
            multiple of ``strip_rows`` (G).

    Returns:
        tuple[Tensor, Tensor]: ``f1_strips`` (S, G*W, C), S = H / G, strip s
        holding rows s*G .. s*G + G - 1 of f1; ``f2_windows`` (S, C, N),
        N = (G + 2d)(W + 2d), strip s's window: rows s*G - d .. s*G + G + d
        - 1 and columns -d .. W + d - 1 of f2, zero outside the map. Both
        are small contiguous copies (one clip).
    """
    channels, height, width = f1_clip.shape
    num_strips = height // strip_rows
    padded_width = width + 2 * max_disp
    window_rows = strip_rows + 2 * max_disp
    f1_strips = f1_clip.reshape(channels, num_strips, strip_rows * width)
    f2_padded = F.pad(f2_clip, (max_disp, ) * 4)
    f2_windows = f2_padded.as_strided(
        (num_strips, channels, window_rows * padded_width),
        (strip_rows * padded_width, f2_padded.stride(0), 1))
    return (f1_strips.permute(1, 2, 0).contiguous(),
            f2_windows.contiguous())


class FastLocalCorrelation(torch.autograd.Function):
    """Local correlation by strip GEMMs; saves only its two inputs.

    ``FastLocalCorrelation.apply(f1, f2, max_displacement)`` maps two
    (B, C, H, W) tensors to (B, (2d+1)^2, H, W), the same numbers as
    ``local_correlation_reference``. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, f1: torch.Tensor, f2: torch.Tensor,
                max_displacement: int) -> torch.Tensor:
        ctx.save_for_backward(f1, f2)
        ctx.max_displacement = max_displacement
        with torch.autocast(f1.device.type, enabled=False):
            return _forward(f1, f2, max_displacement)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        f1, f2 = ctx.saved_tensors
        with torch.autocast(f1.device.type, enabled=False):
            grad_f1, grad_f2 = _backward(grad_output, f1, f2,
                                         ctx.max_displacement,
                                         ctx.needs_input_grad[:2])
        return grad_f1, grad_f2, None


def _forward(f1: torch.Tensor, f2: torch.Tensor,
             max_disp: int) -> torch.Tensor:
    """(B, C, H, W) twice -> (B, (2d+1)^2, H, W), clip by clip."""
    batch, _, height, width = f1.shape
    side = 2 * max_disp + 1
    strip_rows = strip_rows_for(height)
    # Returned as allocated (not a view), so that callers may ReLU in place.
    output = f1.new_empty(batch, side * side, height, width)
    output_strips = output.view(batch, side, side, height // strip_rows,
                                strip_rows, width)
    for clip in range(batch):
        f1_strips, f2_windows = _clip_strips(f1[clip], f2[clip], max_disp,
                                             strip_rows)
        strips = torch.bmm(f1_strips, f2_windows)  # (S, G*W, N)
        output_strips[clip].copy_(
            _window_view(strips, height, width, max_disp))
    return output


def _backward(grad_output: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor,
              max_disp: int, needs_grad=(True, True)):
    """Gradients of ``_forward`` w.r.t. f1 and f2, both (B, C, H, W).

    The output gradient of one clip is written into the strip layout (zero
    outside the window), then grad of the f1 strips = G_strip @ windows^T
    and grad of the windows = f1_strips^T @ G_strip, the windows' gradients
    summed where windows overlap.
    """
    batch, channels, height, width = f1.shape
    side = 2 * max_disp + 1
    strip_rows = strip_rows_for(height)
    num_strips = height // strip_rows
    padded_width = width + 2 * max_disp
    window_rows = strip_rows + 2 * max_disp
    # Entries outside the window stay zero: only the window is ever written.
    strip_grad = f1.new_zeros(num_strips, strip_rows * width,
                              window_rows * padded_width)
    strip_grad_window = _window_view(strip_grad, height, width, max_disp)
    grad_f1 = torch.empty_like(f1) if needs_grad[0] else None
    grad_f2 = torch.empty_like(f2) if needs_grad[1] else None
    padded_grad = f1.new_empty(channels, height + 2 * max_disp, padded_width)
    for clip in range(batch):
        strip_grad_window.copy_(grad_output[clip].reshape(
            side, side, num_strips, strip_rows, width))
        f1_strips, f2_windows = _clip_strips(f1[clip], f2[clip], max_disp,
                                             strip_rows)
        if grad_f1 is not None:
            # (S, C, N) @ (S, N, G*W) -> (S, C, G*W) -> (C, H, W).
            strips_grad = torch.bmm(f2_windows, strip_grad.transpose(1, 2))
            grad_f1[clip].view(channels, num_strips,
                               strip_rows * width).copy_(
                                   strips_grad.transpose(0, 1))
        if grad_f2 is not None:
            # (S, C, G*W) @ (S, G*W, N) -> (S, C, G + 2d, W + 2d).
            windows_grad = torch.bmm(f1_strips.transpose(1, 2), strip_grad)
            windows_grad = windows_grad.view(num_strips, channels,
                                             window_rows, padded_width)
            padded_grad.zero_()
            for strip in range(num_strips):
                first = strip * strip_rows
                padded_grad[:, first:first + window_rows] += \
                    windows_grad[strip]
            grad_f2[clip].copy_(
                padded_grad[:, max_disp:max_disp + height,
                            max_disp:max_disp + width])
    return grad_f1, grad_f2
