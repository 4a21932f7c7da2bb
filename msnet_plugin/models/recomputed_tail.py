"""The last conv-BN-ReLU of MotionSqueeze, recomputed in backward.

MotionSqueeze's transformation ends with a 1x1 convolution back to the
input's channels (64 -> 512 after ResNet-50 layer2), batch norm and ReLU at
the feature map's full size. Autograd would keep the convolution's output
(for batch norm) and the ReLU's output (for its mask) until backward: two
full-size tensors per frame, more than everything else MS stores. In eager
training :func:`recomputed_conv_bn_relu` keeps only the 64-channel input
(which the ReLU before it keeps anyway) and recomputes in backward: same
outputs, same gradients, batch-norm running statistics updated once. The
price is one more forward of that convolution per training step: 0.2
GFLOPs for a clip of 8 frames at 224 px, about 0.2 % of MSNet-R50's
training step (forward and backward).

In the usual case (a 1x1 convolution, batch norm with batch statistics, no
autocast) :class:`_InputStatsConvBNReLU` never makes the convolution's
output at all: the batch statistics of ``z = W x`` follow from the
input's, ``mean_z = W mean_x`` and ``var_z = diag(W cov_x W^T)``, with
``cov_x`` a (C_in, C_in) matrix from one small product. Batch norm then
folds into the weights, and forward is one matrix product, a bias and a
ReLU in place, into the output's buffer. Backward recomputes that product
for the ReLU's mask, writes the masked gradient into the same buffer, and
gets every gradient from it with two more products and (C_out, C_in)
arithmetic: batch norm's backward written in terms of ``x``'s statistics.
Full-size buffers per step: two, where the modules make six (convolution,
batch norm and the gradients of each), each paid for in memory traffic
and page faults. Otherwise :class:`_RecomputedConvBNReLU` recomputes the
modules' own ops.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .folded_blocks import is_pointwise, scaled_pointwise_conv_relu


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


def _update_running_stats(bn: nn.Module, mean: torch.Tensor,
                          unbiased_var: torch.Tensor) -> None:
    """What ``nn.BatchNorm2d``'s training forward does to its buffers, given
    the batch's (C,) mean and unbiased variance."""
    if bn.running_mean is None:
        return
    bn.num_batches_tracked.add_(1)
    factor = (1.0 / float(bn.num_batches_tracked)
              if bn.momentum is None else bn.momentum)
    bn.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
    bn.running_var.mul_(1 - factor).add_(unbiased_var, alpha=factor)


class _InputStatsConvBNReLU(torch.autograd.Function):
    """ReLU(BN(conv(x))) for a 1x1 conv and batch norm with batch
    statistics, the statistics taken from ``x``'s (module doc); keeps ``x``,
    the weights and (C,) or (C_in, C_in) statistics for backward."""

    @staticmethod
    def forward(ctx, x, conv_weight, bn_weight, bn_bias, bn):
        batch, in_channels, height, width = x.shape
        count = batch * height * width
        flat = x.reshape(batch, in_channels, height * width)
        weight = conv_weight.view(-1, in_channels)
        mean_x = flat.sum(2).sum(0) / count
        centred = flat - mean_x.view(1, -1, 1)
        cov_x = torch.bmm(centred, centred.transpose(1, 2)).sum(0) / count
        mean = weight @ mean_x
        var = ((weight @ cov_x) * weight).sum(1).clamp_(min=0)
        _update_running_stats(bn, mean, var * (count / (count - 1)))
        invstd = torch.rsqrt(var + bn.eps)
        scale = bn_weight * invstd
        shift = bn_bias - mean * scale
        ctx.save_for_backward(x, conv_weight, mean_x, cov_x, mean, invstd,
                              scale, shift)
        # Written into a tensor of its own, not returned as a view: the
        # caller may add into it in place (nothing here keeps it).
        return scaled_pointwise_conv_relu(
            x, weight, scale, shift,
            x.new_empty(batch, weight.shape[0], height, width))

    @staticmethod
    def backward(ctx, grad_output):
        x, conv_weight, mean_x, cov_x, mean, invstd, scale, shift = \
            ctx.saved_tensors
        batch, in_channels, height, width = x.shape
        count = batch * height * width
        flat = x.reshape(batch, in_channels, height * width)
        weight = conv_weight.view(-1, in_channels)
        # The ReLU's mask (its output's sign, 0 or 1), and the gradient
        # through it, in the same buffer: (N, C_out, H*W).
        grad = scaled_pointwise_conv_relu(x, weight, scale, shift).view(
            batch, -1, height * width).sign_().mul_(
                grad_output.reshape(batch, -1, height * width))
        grad_shift = grad.sum(2).sum(0)
        # sum over positions of grad * x^T: (C_out, C_in).
        grad_outer = torch.bmm(grad, flat.transpose(1, 2)).sum(0)
        # Batch norm's backward with x_hat = invstd * (W x - mean):
        # grad_z = scale * (grad - grad_shift / count)
        #          - along_x_hat * (W (x - mean_x)).
        grad_bn_weight = invstd * ((grad_outer * weight).sum(1) -
                                   mean * grad_shift)
        along_x_hat = scale * invstd * grad_bn_weight / count
        grad_x = grad_weight = None
        if ctx.needs_input_grad[0]:
            # W^T grad_z, the last term through the (C_in, C_in) matrix
            # W^T diag(along_x_hat) W on the small input.
            through_mean = weight.t() @ (scale * grad_shift) / count
            through_x_hat = weight.t() @ (along_x_hat.view(-1, 1) * weight)
            grad_x = (torch.matmul((scale.view(-1, 1) * weight).t(), grad) -
                      through_mean.view(1, -1, 1) -
                      torch.matmul(through_x_hat,
                                   flat - mean_x.view(1, -1, 1))).view_as(x)
        if ctx.needs_input_grad[1]:
            # sum over positions of grad_z x^T; sum of x = count * mean_x,
            # sum of (x - mean_x) x^T = count * cov_x.
            grad_weight = (scale.view(-1, 1) * grad_outer -
                           (scale * grad_shift).view(-1, 1) * mean_x -
                           count * along_x_hat.view(-1, 1) *
                           (weight @ cov_x)).view_as(conv_weight)
        return grad_x, grad_weight, grad_bn_weight, grad_shift, None


def recomputed_conv_bn_relu(block: nn.Sequential,
                            x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` for a ``conv_bn_relu`` block (Conv2d without bias,
    BatchNorm2d, ReLU; not SyncBatchNorm, whose statistics a recomputation
    would have to gather again): (N, C_in, H, W) -> (N, C_out, H, W),
    keeping only ``x`` for backward. Autograd keeps nothing of the output,
    which is not a view: the caller may change it in place."""
    conv, bn, _ = block
    # Batch statistics over more than one value per channel (else batch
    # norm's own error), float32 or wider throughout.
    if (is_pointwise(conv) and bn.training and bn.affine
            and not torch.is_autocast_enabled(x.device.type)
            and x.numel() > x.shape[1]):
        return _InputStatsConvBNReLU.apply(x, conv.weight, bn.weight,
                                           bn.bias, bn)
    return _RecomputedConvBNReLU.apply(x, conv.weight, bn.weight, bn.bias,
                                       block)
