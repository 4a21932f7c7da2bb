"""The last conv-BN-ReLU of MotionSqueeze, recomputed in backward.

MotionSqueeze's transformation ends with a 1x1 convolution back to the
input's channels (64 -> 512 after ResNet-50 layer2), batch norm and ReLU at
the feature map's full size. Autograd would keep the convolution's output
(for batch norm) and the ReLU's output (for its mask) until backward: two
full-size tensors per frame, more than everything else MS stores. In eager
training :func:`recomputed_conv_bn_relu` keeps only the 64-channel input
(which the ReLU before it keeps anyway) and recomputes the three ops in
backward: same outputs, same gradients, batch-norm running statistics
updated once. The price is one more forward of that convolution per
training step: 0.2 GFLOPs for a clip of 8 frames at 224 px, about 0.2 % of
MSNet-R50's training step (forward and backward).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class _RecomputedConvBNReLU(torch.autograd.Function):
    """ReLU(BN(conv(x))), keeping only ``x`` (and the weights) for
    backward."""

    @staticmethod
    def forward(ctx, x, conv_weight, bn_weight, bn_bias, block):
        conv, bn, _ = block
        device = x.device.type
        ctx.autocast = (torch.is_autocast_enabled(device),
                        torch.get_autocast_dtype(device))
        ctx.conv_args = (conv.stride, conv.padding, conv.dilation, conv.groups)
        ctx.eps = bn.eps
        # As nn.BatchNorm2d decides: batch statistics in training mode (or
        # without running statistics), else the running ones (e.g. under
        # MMAction2's norm_eval), which forward leaves unchanged then.
        ctx.running_stats = None if bn.training or bn.running_mean is None \
            else (bn.running_mean, bn.running_var)
        ctx.save_for_backward(x, conv_weight, bn_weight, bn_bias)
        # The modules themselves: batch norm updates its running statistics
        # here, once. ReLU in place: no autograd records this forward, and a
        # fresh full-size buffer costs more than the ReLU.
        return bn(conv(x)).relu_()

    @staticmethod
    def backward(ctx, grad_output):
        x, conv_weight, bn_weight, bn_bias = ctx.saved_tensors
        enabled, dtype = ctx.autocast
        inputs = [x.detach().requires_grad_(ctx.needs_input_grad[0]),
                  conv_weight, bn_weight, bn_bias]
        with torch.enable_grad(), torch.autocast(
                x.device.type, dtype=dtype, enabled=enabled):
            # The statistics forward used; no running-statistics update.
            running_mean, running_var = ctx.running_stats or (None, None)
            # ReLU in place: batch norm's backward needs its input, not
            # its output.
            output = F.relu(
                F.batch_norm(
                    F.conv2d(inputs[0], conv_weight, None, *ctx.conv_args),
                    running_mean, running_var, bn_weight, bn_bias,
                    training=ctx.running_stats is None, eps=ctx.eps),
                inplace=True)
        wanted = [i for i, needed in enumerate(ctx.needs_input_grad[:4])
                  if needed]
        grads = torch.autograd.grad(output, [inputs[i] for i in wanted],
                                    grad_output)
        result = [None] * 5
        for i, grad in zip(wanted, grads):
            result[i] = grad
        return tuple(result)


def recomputed_conv_bn_relu(block: nn.Sequential,
                            x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` for a ``conv_bn_relu`` block (Conv2d without bias,
    BatchNorm2d, ReLU; not SyncBatchNorm, whose statistics a recomputation
    would have to gather again): (N, C_in, H, W) -> (N, C_out, H, W),
    keeping only ``x`` for backward."""
    conv, bn, _ = block
    return _RecomputedConvBNReLU.apply(x, conv.weight, bn.weight, bn.bias,
                                       block)
