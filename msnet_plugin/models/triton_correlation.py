"""Local correlation as Triton kernels (CUDA tensors, ``triton`` installed).

Importing this module imports ``triton``; :mod:`.correlation` imports it only
when the ``'triton'`` kernel is chosen. Three kernels, each a direct loop
with float32 accumulation and no intermediate beyond the output:

- forward: one program per (clip, row y, window row dy, block of x); for
  every channel it loads f1 at the block and f2 at the (2d+1) shifted
  positions of row y + dy, and accumulates a (2d+1, block) tile;
- grad_f1[c, y, x] = sum over (dy, dx) of grad[dy, dx, y, x] * f2[c, y + dy,
  x + dx];
- grad_f2[c, y, x] = sum over (dy, dx) of grad[dy, dx, y - dy, x - dx] *
  f1[c, y - dy, x - dx].

Offsets are 32-bit: inputs of 2**31 elements or more are refused.
``'auto'`` uses it only after it matched the ``'fast'`` kernel on the
device (see correlation.py); tests/test_correlation_kernels.py compares it
with the reference on CUDA (``tools/gpu_check.sh`` runs those tests).
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _forward_kernel(f1_ptr, f2_ptr, out_ptr, channels, height, width,
                    MAX_DISP: tl.constexpr, SIDE_PAD: tl.constexpr,
                    BLOCK_W: tl.constexpr):
    row = tl.program_id(0)  # clip * height + y
    window_row = tl.program_id(1)  # dy + d
    block = tl.program_id(2)
    side = 2 * MAX_DISP + 1
    clip = row // height
    y = row % height
    y2 = y + window_row - MAX_DISP
    plane = height * width
    xs = block * BLOCK_W + tl.arange(0, BLOCK_W)
    js = tl.arange(0, SIDE_PAD)  # dx + d
    x2 = xs[None, :] + js[:, None] - MAX_DISP
    x_ok = xs < width
    row_ok = (y2 >= 0) & (y2 < height)
    f2_ok = ((js[:, None] < side) & (x2 >= 0) & (x2 < width) & x_ok[None, :]
             & row_ok)
    f1_base = f1_ptr + clip * channels * plane + y * width
    f2_base = f2_ptr + clip * channels * plane + y2 * width
    acc = tl.zeros((SIDE_PAD, BLOCK_W), dtype=tl.float32)
    for c in range(channels):
        v1 = tl.load(f1_base + c * plane + xs, mask=x_ok, other=0.)
        v2 = tl.load(f2_base + c * plane + x2, mask=f2_ok, other=0.)
        acc += v1.to(tl.float32)[None, :] * v2.to(tl.float32)
    out_offsets = (((clip * side + window_row) * side + js[:, None]) * plane +
                   y * width + xs[None, :])
    tl.store(out_ptr + out_offsets,
             acc.to(out_ptr.dtype.element_ty),
             mask=(js[:, None] < side) & x_ok[None, :])


@triton.jit
def _grad_kernel(grad_ptr, other_ptr, result_ptr, channels, height, width,
                 SIGN: tl.constexpr, MAX_DISP: tl.constexpr,
                 BLOCK_C: tl.constexpr, BLOCK_W: tl.constexpr):
    """SIGN = 1: grad_f1 (other = f2, grad read at the own position);
    SIGN = -1: grad_f2 (other = f1, grad read at the source position)."""
    row = tl.program_id(0)  # clip * height + y
    cblock = tl.program_id(1)
    block = tl.program_id(2)
    side = 2 * MAX_DISP + 1
    clip = row // height
    y = row % height
    plane = height * width
    xs = block * BLOCK_W + tl.arange(0, BLOCK_W)
    cs = cblock * BLOCK_C + tl.arange(0, BLOCK_C)
    x_ok = xs < width
    c_ok = cs < channels
    other_base = other_ptr + clip * channels * plane + cs[:, None] * plane
    acc = tl.zeros((BLOCK_C, BLOCK_W), dtype=tl.float32)
    for i in range(side):
        ys = y + SIGN * (i - MAX_DISP)
        for j in range(side):
            xs2 = xs + SIGN * (j - MAX_DISP)
            ok = x_ok & (xs2 >= 0) & (xs2 < width) & (ys >= 0) & (ys < height)
            grad_base = grad_ptr + ((clip * side + i) * side + j) * plane
            if SIGN == 1:
                g = tl.load(grad_base + y * width + xs, mask=ok, other=0.)
            else:
                g = tl.load(grad_base + ys * width + xs2, mask=ok, other=0.)
            v = tl.load(other_base + ys * width + xs2[None, :],
                        mask=c_ok[:, None] & ok[None, :], other=0.)
            acc += g.to(tl.float32)[None, :] * v.to(tl.float32)
    offsets = (clip * channels * plane + cs[:, None] * plane + y * width +
               xs[None, :])
    tl.store(result_ptr + offsets,
             acc.to(result_ptr.dtype.element_ty),
             mask=c_ok[:, None] & x_ok[None, :])


def _block_w(width: int) -> int:
    return min(triton.next_power_of_2(width), 64)


def _check(*tensors: torch.Tensor) -> None:
    for tensor in tensors:
        if tensor.device.type != 'cuda':
            raise RuntimeError('the triton correlation kernel needs CUDA '
                               f'tensors, got one on {tensor.device}')
        if tensor.numel() >= 2**31:
            raise RuntimeError(
                'the triton correlation kernel uses 32-bit offsets; '
                f'{tuple(tensor.shape)} is too large, use the fast kernel')


class TritonLocalCorrelation(torch.autograd.Function):
    """Triton local correlation: (B, C, H, W) twice -> (B, (2d+1)^2, H, W).

    Saves only its inputs; not twice differentiable.
    """

    @staticmethod
    def forward(ctx, f1: torch.Tensor, f2: torch.Tensor,
                max_displacement: int) -> torch.Tensor:
        f1, f2 = f1.contiguous(), f2.contiguous()
        batch, channels, height, width = f1.shape
        side = 2 * max_displacement + 1
        out = f1.new_empty(batch, side * side, height, width)
        _check(f1, f2, out)
        block_w = _block_w(width)
        grid = (batch * height, side, triton.cdiv(width, block_w))
        with torch.cuda.device(f1.device):
            _forward_kernel[grid](
                f1, f2, out, channels, height, width,
                MAX_DISP=max_displacement,
                SIDE_PAD=triton.next_power_of_2(side),
                BLOCK_W=block_w)
        ctx.save_for_backward(f1, f2)
        ctx.max_displacement = max_displacement
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output: torch.Tensor):
        f1, f2 = ctx.saved_tensors
        grad_output = grad_output.contiguous()
        batch, channels, height, width = f1.shape
        block_w = _block_w(width)
        block_c = min(triton.next_power_of_2(channels), 32)
        grid = (batch * height, triton.cdiv(channels, block_c),
                triton.cdiv(width, block_w))
        grads = []
        for sign, other, needed in ((1, f2, ctx.needs_input_grad[0]),
                                    (-1, f1, ctx.needs_input_grad[1])):
            if not needed:
                grads.append(None)
                continue
            result = torch.empty_like(other)
            with torch.cuda.device(other.device):
                _grad_kernel[grid](
                    grad_output, other, result, channels, height, width,
                    SIGN=sign,
                    MAX_DISP=ctx.max_displacement,
                    BLOCK_C=block_c,
                    BLOCK_W=block_w)
            grads.append(result)
        return grads[0], grads[1], None
