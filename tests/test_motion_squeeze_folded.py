"""MotionSqueeze's eager fast path: batch norm folded into the convs (eval),
1x1 convs as matrix products, the residual added in place. Same numbers as
the plain modules."""
import pytest
import torch

import msnet_plugin.models.motion_squeeze as motion_squeeze
from msnet_plugin.models import MotionSqueeze
from msnet_plugin.models.folded_blocks import folded_conv_bn_relu
from msnet_plugin.models.motion_squeeze import conv_bn_relu


def randomise_batch_norms(module: torch.nn.Module, seed: int = 0) -> None:
    """Running statistics and affine parameters away from 0/1, so that a
    fold that drops one of them shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                for tensor, low, high in ((bn.running_mean, -0.5, 0.5),
                                          (bn.running_var, 0.5, 2.0),
                                          (bn.weight, 0.5, 1.5),
                                          (bn.bias, -0.3, 0.3)):
                    tensor.copy_(torch.rand(tensor.shape,
                                            generator=generator) *
                                 (high - low) + low)


def outputs_and_gradients(module, x, grad_out, run=None):
    """The output of ``run(module, x)`` (``module(x)`` without ``run``) and,
    after a backward of ``grad_out``, the gradients of x and of every
    parameter (accumulated, as a second call shows)."""
    x = x.clone().requires_grad_()
    out = module(x) if run is None else run(module, x)
    out.backward(grad_out)
    return [out, x.grad] + [p.grad for p in module.parameters()]


def with_plain_modules(monkeypatch, function, *args):
    """``function(*args)`` with MotionSqueeze running every conv-BN-ReLU
    block as its modules."""
    with monkeypatch.context() as patch:
        patch.setattr(motion_squeeze, 'folded_conv_bn_relu',
                      lambda block, x: block(x))
        return function(*args)


@pytest.mark.parametrize('in_channels,out_channels,kernel_size,groups', [
    (32, 8, 1, 1), (8, 32, 1, 1), (6, 6, 3, 6), (3, 3, 7, 3)])
def test_folded_block_matches_the_modules_in_eval(in_channels, out_channels,
                                                  kernel_size, groups):
    torch.manual_seed(0)
    block = conv_bn_relu(in_channels, out_channels, kernel_size,
                         groups).eval()
    randomise_batch_norms(block)
    x = torch.randn(4, in_channels, 5, 7)
    with torch.no_grad():
        torch.testing.assert_close(folded_conv_bn_relu(block, x), block(x),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('in_channels,out_channels,kernel_size,groups', [
    (32, 8, 1, 1), (8, 32, 1, 1), (6, 6, 3, 6)])
def test_folded_block_with_batch_statistics_matches_the_modules(
        in_channels, out_channels, kernel_size, groups):
    """In training mode the batch norm normalises with batch statistics:
    nothing is folded (a 1x1 conv runs as a batched matrix product), the
    output and every gradient are the modules' within float32 rounding, and
    the running statistics move once."""
    torch.manual_seed(0)
    block = conv_bn_relu(in_channels, out_channels, kernel_size, groups)
    reference = conv_bn_relu(in_channels, out_channels, kernel_size, groups)
    reference.load_state_dict(block.state_dict())
    x = torch.randn(4, in_channels, 5, 7)
    grad_out = torch.randn(4, out_channels, 5, 7)
    got = outputs_and_gradients(block, x, grad_out, folded_conv_bn_relu)
    expected = outputs_and_gradients(reference, x, grad_out)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(block.buffers(), reference.buffers()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert block[1].num_batches_tracked == 1


@pytest.mark.parametrize('in_channels,patch_size,zero_init_residual', [
    (16, 5, False), (64, 7, False), (32, 3, True)])
def test_eval_output_matches_the_plain_modules(monkeypatch, in_channels,
                                               patch_size, zero_init_residual):
    """Eval, no grad: folded blocks and the residual added into the motion
    features' buffer give the plain modules' output; x is left as it was."""
    torch.manual_seed(0)
    module = MotionSqueeze(in_channels, num_segments=4, patch_size=patch_size,
                           zero_init_residual=zero_init_residual).eval()
    randomise_batch_norms(module)
    if zero_init_residual:
        torch.nn.init.uniform_(module.residual_scale.weight, 0.5, 1.5)
    x = torch.randn(8, in_channels, 6, 7)
    x_before = x.clone()
    with torch.no_grad():
        got = module(x)
        assert torch.equal(x, x_before)
        assert got.data_ptr() != x.data_ptr()
        expected = with_plain_modules(monkeypatch, module, x)
        expected_motion = module.transform(
            torch.cat(module.estimate_motion(x), dim=1))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    if not zero_init_residual:
        torch.testing.assert_close(got - x, expected_motion, rtol=1e-5,
                                   atol=1e-5)




@pytest.mark.parametrize('mode', ['train', 'norm_eval', 'eval'])
def test_gradients_and_running_stats_match_the_plain_modules(
        monkeypatch, mode):
    """With autograd: training (batch statistics, nothing folded), BN in
    eval mode in a training module (MMAction2's norm_eval: folded, the
    gradients reach the BN parameters through the fold) and eval with
    gradients (e.g. saliency): same outputs, gradients and running
    statistics as the plain modules."""
    torch.manual_seed(0)
    folded = MotionSqueeze(32, num_segments=4, patch_size=5)
    randomise_batch_norms(folded)
    plain = MotionSqueeze(32, num_segments=4, patch_size=5)
    plain.load_state_dict(folded.state_dict())
    for module in (folded, plain):
        module.train(mode != 'eval')
        for bn in module.modules():
            if mode == 'norm_eval' and isinstance(bn, torch.nn.BatchNorm2d):
                bn.eval()
    x = torch.randn(8, 32, 6, 7)
    grad_out = torch.randn(8, 32, 6, 7)
    got = outputs_and_gradients(folded, x, grad_out)
    expected = with_plain_modules(monkeypatch, outputs_and_gradients, plain,
                                  x, grad_out)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for a, b in zip(folded.buffers(), plain.buffers()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize('in_channels,out_channels,momentum', [
    (64, 128, 0.1), (8, 16, None), (16, 4, 0.3)])
def test_input_stats_tail_matches_the_modules(in_channels, out_channels,
                                              momentum):
    """The recomputed tail with batch statistics from its input's
    (recomputed_tail._InputStatsConvBNReLU), in float64: output, gradients
    of the input and of every parameter, running statistics (twice, so
    that a cumulative average shows) and the batch count as the modules
    give them."""
    from msnet_plugin.models.recomputed_tail import recomputed_conv_bn_relu
    torch.manual_seed(0)
    block = conv_bn_relu(in_channels, out_channels).double()
    block[1].momentum = momentum
    randomise_batch_norms(block)
    reference = conv_bn_relu(in_channels, out_channels).double()
    reference.load_state_dict(block.state_dict())
    reference[1].momentum = momentum
    for _ in range(2):
        # A ReLU'd input, as the depthwise block before it gives.
        x = torch.randn(4, in_channels, 5, 7, dtype=torch.float64).relu_()
        grad_out = torch.randn(4, out_channels, 5, 7, dtype=torch.float64)
        got = outputs_and_gradients(block, x, grad_out,
                                    recomputed_conv_bn_relu)
        expected = outputs_and_gradients(reference, x, grad_out)
        for a, b in zip(got, expected):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        for a, b in zip(block.buffers(), reference.buffers()):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert block[1].num_batches_tracked == 2


@pytest.mark.parametrize('zero_init_residual', [False, True])
def test_training_sum_leaves_x_alone(zero_init_residual):
    """In training x is added into a buffer no autograd node keeps (the
    recomputed tail's output, or the residual scale's), never into x, and
    backward still runs: x's gradient is the output's plus what flows
    back through the motion features."""
    torch.manual_seed(0)
    module = MotionSqueeze(16, num_segments=4, patch_size=3,
                           zero_init_residual=zero_init_residual).train()
    x = torch.randn(8, 16, 5, 6, requires_grad=True)
    x_before = x.detach().clone()
    out = module(x)
    assert torch.equal(x.detach(), x_before)
    assert out.data_ptr() != x.data_ptr()
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    motion_grad, = torch.autograd.grad(module.motion_features(x), x,
                                       grad_out)
    if zero_init_residual:
        motion_grad = torch.zeros_like(motion_grad)
    torch.testing.assert_close(x.grad, grad_out + motion_grad, rtol=1e-4,
                               atol=1e-5)
