"""MotionSqueeze's conv-BN-ReLU blocks with batch norm folded into the conv.

When a batch norm uses its running statistics (eval mode), it is an affine
map per channel, ``scale * z + shift``; folded into the convolution before
it, the block is one convolution with a bias and a ReLU applied in place:
no separate batch-norm pass and no extra buffer at the block's channels
(512 at MotionSqueeze's last block after ResNet-50 layer2).

A 1x1 convolution runs as one batched matrix product, the weight expanded
over the clips' frames (:func:`pointwise_conv`); with batch statistics
(training) on the CPU only, where it was measured: there it took about half
the time of oneDNN's convolution for the 512 -> 64 reduction's forward and
backward at 2 threads (oneDNN ran that backward no faster on 2 threads than
on 1), and as long at 1 thread. Same parameters, same outputs
within float32 rounding; autograd sees the folded weights as functions of
the module's parameters, so gradients flow to them unchanged. Exporters
get the modules themselves (the caller decides, with
:func:`.tracing.is_exporting`).
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def uses_running_stats(bn: nn.Module) -> bool:
    """True when ``bn`` normalises with its running statistics, as
    ``nn.BatchNorm2d`` decides: in eval mode, with statistics tracked."""
    return not bn.training and bn.running_mean is not None


def running_scale_shift(
        bn: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """The (C,) ``scale`` and ``shift`` with ``bn(z) = scale * z + shift``
    per channel, for an affine batch norm that uses its running
    statistics."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def is_pointwise(conv: nn.Conv2d) -> bool:
    """True for a 1x1 convolution that :func:`scaled_pointwise_conv_relu`
    can run: stride 1, no padding, no groups."""
    return (conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding == (0, 0) and conv.groups == 1)


def pointwise_conv(x: torch.Tensor,
                   weight: torch.Tensor,
                   out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """A 1x1 convolution without bias as one batched matrix product,
    ``weight`` expanded (not copied) over the N frames: autograd's backward
    is two batched products and a sum of N (C_out, C_in) matrices.

    Args:
        x (Tensor): (N, C_in, H, W).
        weight (Tensor): (C_out, C_in, 1, 1) or (C_out, C_in).
        out (Tensor, optional): a contiguous (N, C_out, H, W) tensor to
            write into, outside autograd; returned itself, so it is not a
            view (a custom autograd Function's output may then be changed
            in place).

    Returns:
        Tensor: (N, C_out, H, W), contiguous.
    """
    batch, channels, height, width = x.shape
    weight = weight.reshape(1, -1, channels).expand(batch, -1, -1)
    flat = x.reshape(batch, channels, height * width)
    if out is None:
        return torch.bmm(weight, flat).view(batch, -1, height, width)
    torch.bmm(weight, flat, out=out.view(batch, -1, height * width))
    return out


def scaled_pointwise_conv_relu(
        x: torch.Tensor,
        weight: torch.Tensor,
        scale: torch.Tensor,
        shift: torch.Tensor,
        out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``relu(scale * conv1x1(x, weight) + shift)`` per output channel, as
    one matrix product with the scale folded into the weight, the shift and
    the ReLU in place on its output.

    Args:
        x (Tensor): (N, C_in, H, W).
        weight (Tensor): a 1x1 convolution's weight without bias,
            (C_out, C_in, 1, 1) (or (C_out, C_in)).
        scale (Tensor): (C_out,).
        shift (Tensor): (C_out,).
        out (Tensor, optional): as :func:`pointwise_conv`'s.

    Returns:
        Tensor: (N, C_out, H, W), contiguous.
    """
    folded = scale.view(-1, 1) * weight.reshape(scale.shape[0], -1)
    return pointwise_conv(x, folded, out).add_(shift.view(-1, 1, 1)).relu_()


def folded_conv_bn_relu(block: nn.Sequential,
                        x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` for a ``conv_bn_relu`` block (Conv2d without bias,
    batch norm, ReLU). Where the batch norm uses its running statistics: one
    convolution with the folded weight and bias (a 1x1 one as
    :func:`pointwise_conv`), ReLU in place. Otherwise (batch statistics) the
    block's modules, a 1x1 convolution on the CPU as :func:`pointwise_conv`.

    Args:
        block (nn.Sequential): conv, bn, ReLU.
        x (Tensor): (N, C_in, H, W).

    Returns:
        Tensor: (N, C_out, H, W).
    """
    conv, bn, relu = block
    if not uses_running_stats(bn):
        if is_pointwise(conv) and x.device.type == 'cpu':
            return relu(bn(pointwise_conv(x, conv.weight)))
        return block(x)
    scale, shift = running_scale_shift(bn)
    if is_pointwise(conv):
        return scaled_pointwise_conv_relu(x, conv.weight, scale, shift)
    return F.conv2d(x, conv.weight * scale.view(-1, 1, 1, 1), shift,
                    conv.stride, conv.padding, conv.dilation,
                    conv.groups).relu_()
