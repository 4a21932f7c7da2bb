"""MotionSqueeze's conv-BN-ReLU blocks with batch norm folded into the conv.

When a batch norm uses its running statistics (eval mode), it is an affine
map per channel, ``scale * z + shift``; folded into the convolution before
it, the block is one convolution with a bias and a ReLU applied in place:
no separate batch-norm pass and no extra buffer at the block's channels
(512 at MotionSqueeze's last block after ResNet-50 layer2). A 1x1
convolution runs as one matrix product on (N, C, H*W) views
(:func:`pointwise_conv`), which measured faster on the CPU than the
convolution kernels for these sizes. Same parameters, same outputs within
float32 rounding; autograd sees the folded weights as functions of the
module's parameters, so gradients flow to them unchanged. Exporters and
compilers get the modules themselves (the caller decides, with
:func:`.tracing.is_exporting_or_compiling`).
"""
from typing import Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


def uses_running_stats(bn: nn.Module) -> bool:
    """True when ``bn`` normalises with its running statistics, as
    ``nn.BatchNorm2d`` decides: in eval mode, with statistics tracked."""
    return not bn.training and bn.running_mean is not None


def folded_conv_bn(conv: nn.Conv2d,
                   bn: nn.Module) -> Tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of one convolution equal to ``bn(conv(x))`` for a
    batch norm that uses its running statistics.

    Args:
        conv (nn.Conv2d): without bias, weight (C_out, C_in / groups, k, k).
        bn (nn.Module): a batch norm over C_out channels, affine.

    Returns:
        tuple[Tensor, Tensor]: weight (C_out, C_in / groups, k, k), the
        conv's scaled per output channel; bias (C_out,).
    """
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return (conv.weight * scale.view(-1, 1, 1, 1),
            bn.bias - bn.running_mean * scale)


def is_pointwise(conv: nn.Conv2d) -> bool:
    """True for a 1x1 convolution that :func:`pointwise_conv` can run: stride
    1, no padding, no groups."""
    return (conv.kernel_size == (1, 1) and conv.stride == (1, 1)
            and conv.padding == (0, 0) and conv.groups == 1)


def pointwise_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution without bias as one matrix product.

    Args:
        x (Tensor): (N, C_in, H, W).
        weight (Tensor): (C_out, C_in, 1, 1).

    Returns:
        Tensor: (N, C_out, H, W), contiguous.
    """
    batch, channels, height, width = x.shape
    return torch.matmul(weight.view(-1, channels),
                        x.reshape(batch, channels, height * width)).view(
                            batch, -1, height, width)


def folded_conv_bn_relu(block: nn.Sequential,
                        x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` for a ``conv_bn_relu`` block (Conv2d without bias,
    batch norm, ReLU) whose batch norm uses its running statistics: one
    convolution with the folded weight and bias (a 1x1 one as a matrix
    product), ReLU in place. Otherwise (batch statistics) ``block(x)``.

    Args:
        block (nn.Sequential): conv, bn, ReLU.
        x (Tensor): (N, C_in, H, W).

    Returns:
        Tensor: (N, C_out, H, W).
    """
    conv, bn, _ = block
    if not uses_running_stats(bn):
        return block(x)
    weight, bias = folded_conv_bn(conv, bn)
    if is_pointwise(conv):
        output = pointwise_conv(x, weight).add_(bias.view(-1, 1, 1))
    else:
        output = F.conv2d(x, weight, bias, conv.stride, conv.padding,
                          conv.dilation, conv.groups)
    return output.relu_()
