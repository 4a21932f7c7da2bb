"""Local correlation by strip GEMMs: one formulation in plain tensor ops.

The plain formulation (``local_correlation_reference``) multiplies ``f1`` by
(2d+1)^2 shifted copies of ``f2``. Here the same numbers come from one
batched matrix product per call and two fixed gathers:

- the maps are cut in strips of ``G`` rows (G divides H, see
  :func:`strip_rows_for`); with channels last, a strip of ``f1`` is a
  (G*W, C) matrix;
- each strip's window is the rows of the zero-padded ``f2`` it can reach,
  a ((G + 2d) * (W + 2d), C) matrix;
- one ``bmm`` over all strips of all clips multiplies them, (G*W) x
  (G + 2d)(W + 2d) products per strip: the window's (2d+1)^2 entries of every
  position and about (G + 2d)(W + 2d) / (2d+1)^2 times as many outside it
  (3.4 times at 28x28 with d = 7 and G = 4), traded for GEMM speed;
- a second fixed gather reads the window entries out of the product,
  position after position: a (B, H, W, (2d+1)^2) tensor, returned as its
  (B, (2d+1)^2, H, W) view, so that the soft-argmax's softmax, max and
  expectation run over the last axis, where runtimes such as onnxruntime
  run them natively (a softmax over the channels of an NCHW tensor is a
  transpose, a softmax and a transpose back there).

:func:`strip_correlation` is that, a handful of ops (permute, pad, gather,
bmm, gather) that autograd, ``torch.compile``, ``torch.export``, both ONNX
exporters and ``torch.jit.trace`` see whole; the gathers' indices depend on
H, W and d only, never on the batch size. Its layout (:class:`BlockLayout`)
pads the strips' rows and the windows to multiples of P = 2d + 1, so that
the P horizontal displacements of each position and displacement row are
one aligned block of the product: the second gather moves H * W * P blocks
of P values rather than H * W * P^2 single values (runtimes such as
onnxruntime copy a gather index by index; at 28x28 with d = 7 the padding
costs 17 % more products). Autograd
keeps its window copies (about 7 times ``f2``) and the product for
backward, so eager training uses :class:`FastLocalCorrelation`: the
product of the unpadded strips (:class:`StripLayout`) on chunks of clips
whose temporaries fit a memory budget, saving only ``f1`` and ``f2``, with
the windows and the band read as strided views (:func:`_band_geometry`,
:func:`_window_row_geometry`; faster than index tensors). Its backward
recomputes the windows chunk by chunk: the output gradient is written into
the product's layout (zero outside the window), two more ``bmm`` give the
gradients of the strips and of the windows, and the windows' gradients are
added back into the rows they were read from.
"""
from typing import NamedTuple, Tuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .tracing import static_sizes

#: Preferred rows per strip: at 28x28 with d = 7, 4 rows keep the wasted
#: products near 3x while the GEMMs (4*W x C times C x (4 + 2d)(W + 2d)) are
#: large enough to run fast. The strip height used is the divisor of H
#: closest to it, so that strips tile the map exactly.
PREFERRED_STRIP_ROWS = 4
#: Memory budget of the eager kernels (this one and the soft-argmax):
#: values held by the temporaries of one chunk of clips (a chunk has at
#: least one clip). On the CPU 2 MiB in float32, so that they stay in cache
#: (larger chunks measured slower at 8x8 and 28x28); on other devices
#: 256 MiB, so that a batch takes few kernel launches.
CPU_CHUNK_ELEMENTS = 1 << 19
DEVICE_CHUNK_ELEMENTS = 1 << 26


def default_chunk_elements(device: torch.device) -> int:
    """The memory budget of the eager kernels on ``device``."""
    return (CPU_CHUNK_ELEMENTS
            if device.type == 'cpu' else DEVICE_CHUNK_ELEMENTS)


def strip_rows_for(height: int) -> int:
    """The divisor of ``height`` closest to PREFERRED_STRIP_ROWS (larger wins
    a tie)."""
    divisors = [g for g in range(1, height + 1) if height % g == 0]
    return min(divisors,
               key=lambda g: (abs(g - PREFERRED_STRIP_ROWS), -g))


class StripLayout(NamedTuple):
    """Sizes of the eager kernel's strips (:class:`FastLocalCorrelation`) for
    (H, W) maps and displacement d."""
    height: int
    width: int
    max_disp: int
    rows: int  #: G, rows per strip
    strips: int  #: S = H / G
    padded_width: int  #: W + 2d
    window_rows: int  #: G + 2d, rows of f2 a strip reaches
    window: int  #: N = (G + 2d)(W + 2d), columns of a strip's product

    @classmethod
    def of(cls, height: int, width: int, max_disp: int) -> 'StripLayout':
        rows = strip_rows_for(height)
        padded_width = width + 2 * max_disp
        window_rows = rows + 2 * max_disp
        return cls(height, width, max_disp, rows, height // rows,
                   padded_width, window_rows, window_rows * padded_width)

    @property
    def side(self) -> int:
        """P = 2d + 1, the window's side."""
        return 2 * self.max_disp + 1

    def values_per_clip(self, channels: int) -> int:
        """Values the temporaries of one clip hold in the backward pass (the
        larger of the two): product and its gradient, windows and their
        gradient, the padded f2 and its gradient, the f1 strips."""
        positions = self.height * self.width
        padded = (self.height + 2 * self.max_disp) * self.padded_width
        return 2 * (positions * self.window +
                    self.strips * self.window * channels +
                    padded * channels) + positions * channels


def _band_geometry(layout: StripLayout, clips: int = 1):
    """Sizes and strides of the window entries in a contiguous
    (clips * S, G*W, N) product: a (clips, P, P, S, G, W) view whose
    ``[b, dy + d, dx + d, s, g, x]`` is the product of position
    (y, x) = (s*G + g, x) of clip b (row ``s * G*W + g*W + x``) with the f2
    value at (y + dy, x + dx), column ``(g + dy + d)(W + 2d) + x + dx + d``.
    Merging (S, G) into H gives the output's (B, P*P, H, W) order."""
    side, rows, width = layout.side, layout.rows, layout.width
    strip = rows * width * layout.window
    return ((clips, side, side, layout.strips, rows, width),
            (layout.strips * strip, layout.padded_width, 1, strip,
             width * layout.window + layout.padded_width, layout.window + 1))


def _window_row_geometry(layout: StripLayout):
    """Sizes and strides of the padded f2 rows of every strip's window: an
    (S, G + 2d) view of the rows whose ``[s, r]`` is row ``s * G + r``."""
    return (layout.strips, layout.window_rows), (layout.rows, 1)


class BlockLayout(NamedTuple):
    """Sizes of :func:`strip_correlation` for (H, W) maps and displacement d:
    the strips of :class:`StripLayout` with rows and windows padded so that
    every run of P = 2d + 1 window entries (one displacement row of one
    position) fills one aligned block of P values of the product."""
    height: int
    width: int
    max_disp: int
    rows: int  #: G, rows per strip (:func:`strip_rows_for`)
    strips: int  #: S = H / G
    strip_width: int  #: Wf, W rounded up to a multiple of P
    padded_width: int  #: Wp, W + 2d rounded up to a multiple of P
    padded_height: int  #: Hp, rows of the padded f2 every window fits in
    window: int  #: Np = (G + 2d) * Wp + P - 1, positions of a window

    @classmethod
    def of(cls, height: int, width: int, max_disp: int) -> 'BlockLayout':
        side = 2 * max_disp + 1
        rows = strip_rows_for(height)
        padded_width = _round_up(width + 2 * max_disp, side)
        window = (rows + 2 * max_disp) * padded_width + side - 1
        last_window_end = (height - rows) * padded_width + window
        return cls(height, width, max_disp, rows, height // rows,
                   _round_up(width, side), padded_width,
                   -(-last_window_end // padded_width), window)

    @property
    def side(self) -> int:
        """P = 2d + 1, the window's side and the block size."""
        return 2 * self.max_disp + 1

    @property
    def strip_size(self) -> int:
        """G * Wf, rows of a strip's product."""
        return self.rows * self.strip_width

    @property
    def blocks_per_clip(self) -> int:
        """Blocks of P values in one clip's (S, G * Wf, Np) product."""
        return self.strips * self.strip_size * self.window // self.side


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def strip_indices(layout: BlockLayout,
                  device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    """The two fixed gathers of :func:`strip_correlation`, as int64 indices.

    Returns:
        tuple[Tensor, Tensor]: ``window_positions`` (S * Np,): for each
        strip, the Np consecutive positions of the flattened (Hp, Wp)
        padded f2 its window reads, from its first row on; ``band_blocks``
        (H * W * P,): for every position (y, x) and displacement row ky,
        in (H, W, P) order, the block of P values of one clip's flattened
        (S, G * Wf, Np) product that holds its P horizontal displacements.
    """
    side, rows = layout.side, layout.rows
    strip = torch.arange(layout.strips, device=device).view(-1, 1)
    window_positions = (strip * rows * layout.padded_width + torch.arange(
        layout.window, device=device).view(1, -1)).reshape(-1)
    row = torch.arange(layout.height, device=device).view(-1, 1, 1)
    column = torch.arange(layout.width, device=device).view(1, -1, 1)
    window_row = torch.arange(side, device=device).view(1, 1, -1)
    # Position (y, x) = (s*G + g, x) is row g * Wf + x of strip s's product;
    # displacement (ky, kx) is column (g + ky) * Wp + x + kx of its window.
    # Wf, Wp and Np + 1 are multiples of P: kx = 0 starts a block.
    strip_row = (row % rows) * layout.strip_width + column
    start = ((row // rows) * layout.strip_size + strip_row) * layout.window \
        + ((row % rows) + window_row) * layout.padded_width + column
    return window_positions, (start // side).reshape(-1)


def strip_correlation(f1: torch.Tensor, f2: torch.Tensor,
                      max_displacement: int) -> torch.Tensor:
    """``local_correlation``'s numbers in plain ops, for the whole batch.

    Args:
        f1, f2 (Tensor): (B, C, H, W) features of frames t and t+1.
        max_displacement (int): d.

    Returns:
        Tensor: (B, (2d+1)^2, H, W), as ``local_correlation_reference``: the
        (0, 3, 1, 2) permutation of a contiguous (B, H, W, (2d+1)^2) tensor
        (``.permute(0, 2, 3, 1)`` gives it back without a copy).
    """
    channels, height, width = static_sizes(f1)
    d = max_displacement
    layout = BlockLayout.of(height, width, d)
    window_positions, band_blocks = strip_indices(layout, f1.device)
    strips = F.pad(f1.permute(0, 2, 3, 1),
                   (0, 0, 0, layout.strip_width - width)).reshape(
                       -1, layout.strip_size, channels)
    padded = F.pad(f2.permute(0, 2, 3, 1),
                   (0, 0, d, layout.padded_width - width - d, d,
                    layout.padded_height - height - d)).reshape(
                        -1, layout.padded_height * layout.padded_width,
                        channels)
    windows = padded.index_select(1, window_positions).reshape(
        -1, layout.window, channels)
    product = torch.bmm(strips, windows.transpose(1, 2))
    blocks = product.reshape(-1, layout.blocks_per_clip, layout.side)
    return blocks.index_select(1, band_blocks).view(
        -1, height, width, layout.side**2).permute(0, 3, 1, 2)


def clips_per_chunk(layout: StripLayout, channels: int,
                    chunk_elements: int) -> int:
    """Clips whose temporaries fit ``chunk_elements`` values (at least 1)."""
    return max(1, chunk_elements // layout.values_per_clip(channels))


class FastLocalCorrelation(torch.autograd.Function):
    """:func:`strip_correlation` chunk by chunk, saving only its inputs.

    ``FastLocalCorrelation.apply(f1, f2, max_displacement, chunk_elements)``
    maps two (B, C, H, W) tensors to (B, (2d+1)^2, H, W); chunks hold as
    many clips as :func:`clips_per_chunk` allows. Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, f1: torch.Tensor, f2: torch.Tensor,
                max_displacement: int, chunk_elements: int) -> torch.Tensor:
        ctx.save_for_backward(f1, f2)
        ctx.settings = (max_displacement, chunk_elements)
        with torch.autocast(f1.device.type, enabled=False):
            return _forward(f1, f2, max_displacement, chunk_elements)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        f1, f2 = ctx.saved_tensors
        with torch.autocast(f1.device.type, enabled=False):
            grad_f1, grad_f2 = _backward(grad_output, f1, f2, *ctx.settings,
                                         ctx.needs_input_grad[:2])
        return grad_f1, grad_f2, None, None


def _chunks(batch: int, step: int):
    for start in range(0, batch, step):
        yield slice(start, min(start + step, batch))


def _chunk_operands(f1: torch.Tensor, f2: torch.Tensor, layout: StripLayout):
    """The eager kernel's GEMM operands for a chunk of clips, read through
    strided views (one copy each): f1 strips (n*S, G*W, C) and f2 windows
    (n*S, C, N), from (n, C, H, W) maps."""
    clips, channels = f1.shape[:2]
    strip_width = layout.rows * layout.width
    strips = f1.reshape(clips, channels, layout.strips,
                        strip_width).permute(0, 2, 3, 1)
    # Contiguous (B, C, H, W): the strided view below assumes that layout.
    padded = F.pad(f2, (layout.max_disp, ) * 4).contiguous()
    (strips_n, window_rows), (row_step, _) = _window_row_geometry(layout)
    plane = padded[0, 0].numel()
    windows = padded.as_strided(
        (clips, strips_n, channels, layout.window),
        (channels * plane, row_step * layout.padded_width, plane, 1))
    return (strips.reshape(-1, strip_width, channels),
            windows.reshape(-1, channels, layout.window))


def _forward(f1: torch.Tensor, f2: torch.Tensor, max_disp: int,
             chunk_elements: int) -> torch.Tensor:
    batch, channels, height, width = f1.shape
    layout = StripLayout.of(height, width, max_disp)
    # Allocated here (not a view): callers may ReLU it in place.
    output = f1.new_empty(batch, layout.side**2, height, width)
    for part in _chunks(batch, clips_per_chunk(layout, channels,
                                               chunk_elements)):
        clips = part.stop - part.start
        strips, windows = _chunk_operands(f1[part], f2[part], layout)
        product = torch.bmm(strips, windows)
        sizes, strides = _band_geometry(layout, clips)
        output[part].view(sizes).copy_(product.as_strided(sizes, strides))
    return output


def _backward(grad_output: torch.Tensor, f1: torch.Tensor, f2: torch.Tensor,
              max_disp: int, chunk_elements: int, needs_grad=(True, True)):
    """Gradients of the strip product w.r.t. f1 and f2, both (B, C, H, W),
    chunk by chunk: the output gradient goes into the product's layout
    (zero outside the window), then grad strips = G @ windows^T and grad
    windows = strips^T @ G, the windows' gradients added back into the rows
    they were read from."""
    batch, channels, height, width = f1.shape
    layout = StripLayout.of(height, width, max_disp)
    strip_width = layout.rows * width
    grad_output = grad_output.contiguous()
    # Contiguous whatever the inputs' memory format: written through views.
    grad_f1 = f1.new_empty(f1.shape) if needs_grad[0] else None
    grad_f2 = f2.new_empty(f2.shape) if needs_grad[1] else None
    product_grad = None
    for part in _chunks(batch, clips_per_chunk(layout, channels,
                                               chunk_elements)):
        clips = part.stop - part.start
        sizes, strides = _band_geometry(layout, clips)
        if product_grad is None or product_grad.shape[0] != clips:
            # Entries outside the window stay zero: only the band is written.
            product_grad = f1.new_zeros(clips * layout.strips, strip_width,
                                        layout.window)
        product_grad.as_strided(sizes, strides).copy_(
            grad_output[part].view(sizes))
        strips, windows = _chunk_operands(f1[part], f2[part], layout)
        if grad_f1 is not None:
            # (n*S, C, N) @ (n*S, N, G*W) -> (n, S, C, G*W) -> (n, C, H, W).
            strips_grad = torch.bmm(windows, product_grad.transpose(1, 2))
            grad_f1[part].view(clips, channels, layout.strips,
                               strip_width).copy_(
                                   strips_grad.view(clips, layout.strips,
                                                    channels,
                                                    strip_width).transpose(
                                                        1, 2))
        if grad_f2 is not None:
            # (n*S, C, G*W) @ (n*S, G*W, N) -> (n, S, C, G + 2d, W + 2d).
            windows_grad = torch.bmm(strips.transpose(1, 2), product_grad)
            windows_grad = windows_grad.view(clips, layout.strips, channels,
                                             layout.window_rows,
                                             layout.padded_width)
            padded_grad = f1.new_zeros(clips, channels,
                                       height + 2 * max_disp,
                                       layout.padded_width)
            for strip in range(layout.strips):
                first = strip * layout.rows
                padded_grad[:, :, first:first + layout.window_rows] += \
                    windows_grad[:, strip]
            grad_f2[part] = padded_grad[:, :, max_disp:max_disp + height,
                                        max_disp:max_disp + width]
    return grad_f1, grad_f2
