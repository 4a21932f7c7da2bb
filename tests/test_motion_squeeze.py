"""MotionSqueeze: correlation, kernel soft-argmax, known motion, errors."""
import pytest
import torch

from msnet_plugin.models import (MotionSqueeze, MSResNetTSM,
                                 kernel_soft_argmax, local_correlation)
from msnet_plugin.models.soft_argmax import (_max_and_first_argmax,
                                             plain_soft_argmax,
                                             soft_argmax_last_axis)

from slow_references import loop_local_correlation, per_pixel_soft_argmax


@pytest.mark.parametrize('shape,d', [((2, 3, 5, 6), 2), ((1, 4, 4, 4), 3),
                                     ((1, 2, 3, 7), 1)])
def test_local_correlation_matches_loop_reference(shape, d):
    torch.manual_seed(0)
    f1, f2 = torch.randn(shape), torch.randn(shape)
    expected = loop_local_correlation(f1, f2, d)
    actual = local_correlation(f1, f2, d)
    assert actual.shape == (shape[0], (2 * d + 1)**2) + shape[2:]
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5)


def test_local_correlation_zero_outside_the_map():
    f = torch.ones(1, 1, 3, 3)
    corr = local_correlation(f, f, 2)
    # Displacement (dy, dx) = (-2, -2) from the top-left corner leaves the map.
    assert corr[0, 0, 0, 0] == 0
    # The centre pixel sees (dy, dx) = (+1, +1) but not (+2, +2).
    assert corr[0, (1 + 2) * 5 + (1 + 2), 1, 1] == 1
    assert corr[0, 24, 1, 1] == 0


def test_kernel_soft_argmax_matches_reference():
    torch.manual_seed(0)
    corr = torch.relu(torch.randn(2, 25, 3, 4, dtype=torch.float64)) * 0.05
    disp, conf = kernel_soft_argmax(corr, 5, sigma=1.5, temperature=100.0)
    ref_disp, ref_conf = per_pixel_soft_argmax(corr, 5, 100.0, sigma=1.5)
    torch.testing.assert_close(disp, ref_disp)
    torch.testing.assert_close(conf, ref_conf)


@pytest.mark.parametrize('sigma', [1.5, None])
def test_soft_argmax_last_axis_matches_the_eager_soft_argmax(sigma):
    """What exporters get: the window last, float32, logits down to 100
    below the peak (floored at 60 below it), same numbers as the eager
    kernel (or plain) soft-argmax in float64, which the tests above hold to
    the spec's per-pixel steps."""
    torch.manual_seed(0)
    corr = torch.rand(2, 25, 3, 4, dtype=torch.float64)
    if sigma is None:
        ref_disp, ref_conf = plain_soft_argmax(corr, 5, 100.0)
    else:
        ref_disp, ref_conf = kernel_soft_argmax(corr, 5, sigma, 100.0)
    disp, conf = soft_argmax_last_axis(corr.float().permute(0, 2, 3, 1), 5,
                                       100.0, sigma)
    torch.testing.assert_close(disp.double(), ref_disp, rtol=0, atol=1e-5)
    torch.testing.assert_close(conf.double(), ref_conf, rtol=0, atol=1e-7)


def test_row_by_row_argmax_picks_the_first_maximum():
    """The exporters' two-pass argmax (best window row, then best entry in
    it) gives torch.argmax's index, the first maximum in ky * P + kx order,
    also with ties across rows, within a row and over a whole window."""
    torch.manual_seed(0)
    corr = torch.rand(2, 3, 4, 25)
    corr[0, 0, 0] = 0  # a window of zeros (a ReLU'd correlation can be)
    corr[0, 0, 1, [21, 7, 3]] = 2.0  # ties in rows 4, 1 and 0
    corr[0, 0, 2, [9, 6]] = 2.0  # ties within row 1
    corr[1] = (corr[1] * 4).round()  # many ties
    confidence, best_index = _max_and_first_argmax(corr, 5)
    assert torch.equal(best_index, corr.argmax(dim=-1, keepdim=True))
    assert torch.equal(confidence, corr.amax(dim=-1, keepdim=True))
    assert best_index[0, 0, :3, 0].tolist() == [0, 3, 6]


@pytest.mark.parametrize('dx,dy', [(3, 0), (0, -2), (-5, 4), (7, -7), (0, 0),
                                   (-1, 6)])
def test_estimate_motion_recovers_known_shift(dx, dy):
    """A map and its copy moved by (dx, dy) give displacement (dx/7, dy/7)."""
    torch.manual_seed(dx * 31 + dy)
    channels, size = 32, 24
    ms = MotionSqueeze(channels, num_segments=2).eval()
    frame0 = torch.randn(channels, size, size)
    frame1 = torch.roll(frame0, shifts=(dy, dx), dims=(1, 2))
    with torch.no_grad():
        disp, conf = ms.estimate_motion(torch.stack([frame0, frame1]))
    assert disp.shape == (2, 2, size, size) and conf.shape == (2, 1, size,
                                                               size)
    interior = (slice(None), slice(7, size - 7), slice(7, size - 7))
    for frame in range(2):  # the last frame repeats the pair's maps
        torch.testing.assert_close(
            disp[frame][interior][0],
            torch.full((size - 14, size - 14), dx / 7), atol=1e-3, rtol=0)
        torch.testing.assert_close(
            disp[frame][interior][1],
            torch.full((size - 14, size - 14), dy / 7), atol=1e-3, rtol=0)
        assert conf[frame][interior].min() > 0.99


def test_motion_squeeze_shapes_and_repeated_last_pair():
    torch.manual_seed(0)
    ms = MotionSqueeze(16, num_segments=4)
    x = torch.randn(8, 16, 10, 12)
    out = ms(x)
    assert out.shape == x.shape
    disp, conf = ms.estimate_motion(x)
    assert disp.shape == (8, 2, 10, 12) and conf.shape == (8, 1, 10, 12)
    assert disp.abs().max() <= 1 + 1e-6  # float rounding of an average
    clip_disp = disp.view(2, 4, 2, 10, 12)
    torch.testing.assert_close(clip_disp[:, 3], clip_disp[:, 2])
    assert not torch.allclose(clip_disp[:, 1], clip_disp[:, 2])


def test_gradients_reach_every_ms_parameter():
    torch.manual_seed(0)
    ms = MotionSqueeze(16, num_segments=4)
    x = torch.randn(8, 16, 10, 10, requires_grad=True)
    ms(x).pow(2).sum().backward()
    for name, param in ms.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name
    assert x.grad.abs().sum() > 0


def test_hyperparameters_are_arguments_with_paper_defaults():
    ms = MotionSqueeze(512)
    assert (ms.num_segments, ms.patch_size, ms.sigma,
            ms.temperature) == (8, 15, 5.0, 100.0)
    assert ms.reduce[0].out_channels == 64
    assert ms.transform[-1][-1][0].out_channels == 512
    small = MotionSqueeze(128, reduced_channels=32, patch_size=9, sigma=2.0,
                          temperature=10.0, out_channels=64)
    assert small.reduce[0].out_channels == 32
    assert small.motion_features(torch.randn(8, 128, 6, 6)).shape[1] == 64


def outputs_and_gradients(module, x, grad_out):
    x = x.clone().requires_grad_()
    out = module(x)
    params = list(module.parameters())
    return [out] + list(torch.autograd.grad(out, [x] + params, grad_out))


def saved_for_backward_bytes(module, x):
    """Bytes autograd keeps for backward after ``module(x)``."""
    saved = []

    def pack(tensor):
        saved.append(tensor.numel() * tensor.element_size())
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x.clone().requires_grad_())
    return sum(saved)


def test_with_cp_gives_the_same_outputs_and_gradients_for_less_memory():
    torch.manual_seed(0)
    plain = MotionSqueeze(16, num_segments=4, patch_size=5)
    checkpointed = MotionSqueeze(16, num_segments=4, patch_size=5,
                                 with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(8, 16, 10, 12)
    grad_out = torch.randn(8, 16, 10, 12)
    # In float64: without with_cp the last block's batch statistics come
    # from its input's (recomputed_tail.py), the same numbers up to
    # rounding, which float32 BN-weight gradients show at 1e-4 (as much as
    # the modules themselves differ from float64 there).
    for got, expected in zip(
            outputs_and_gradients(checkpointed.double(), x.double(),
                                  grad_out.double()),
            outputs_and_gradients(plain.double(), x.double(),
                                  grad_out.double())):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    checkpointed.float(), plain.float()
    # Checkpointed, the module keeps only its input for backward: the
    # correlation, soft-argmax and transformation activations are
    # recomputed.
    assert saved_for_backward_bytes(checkpointed, x) == x.numel() * 4
    assert saved_for_backward_bytes(plain, x) > 10 * x.numel() * 4


@pytest.mark.parametrize('autocast, norm_eval', [(False, False),
                                                 (True, False),
                                                 (False, True)])
def test_last_conv_bn_relu_is_recomputed_for_the_same_numbers(
        monkeypatch, autocast, norm_eval):
    """In eager training the transformation's last conv-BN-ReLU (64 ->
    out_channels, full size) is recomputed in backward: outputs, gradients
    and BN running statistics as with autograd keeping it (also under CPU
    bfloat16 autocast, and with BN in eval mode as MMAction2's norm_eval
    leaves it in a training model), and two full-size tensors fewer kept
    for backward. With batch statistics and no autocast the statistics come
    from the block's input (_InputStatsConvBNReLU): the same numbers up to
    rounding, compared in float64 (float32 BN-weight gradients before the
    soft-argmax differ by 1e-4, as much as the modules' own differ from
    float64); otherwise the modules' own ops, bit for bit."""
    import msnet_plugin.models.motion_squeeze as motion_squeeze
    torch.manual_seed(0)
    recomputed = MotionSqueeze(128, num_segments=4, patch_size=5)
    kept = MotionSqueeze(128, num_segments=4, patch_size=5)
    for module in recomputed.modules():
        if norm_eval and isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    kept.load_state_dict(recomputed.state_dict())
    for module in [*recomputed.modules(), *kept.modules()]:
        if norm_eval and isinstance(module, torch.nn.BatchNorm2d):
            module.eval()
    input_stats = not (autocast or norm_eval)
    dtype = torch.float64 if input_stats else torch.float32
    recomputed.to(dtype), kept.to(dtype)
    x = torch.randn(8, 128, 6, 7, dtype=dtype)
    grad_out = torch.randn(8, 128, 6, 7, dtype=dtype)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        got = outputs_and_gradients(recomputed, x, grad_out)
        recomputed_bytes = saved_for_backward_bytes(recomputed, x)
        # The modules, their output copied: like the recomputed tail's, it
        # is nothing autograd keeps, so forward may add x into it.
        monkeypatch.setattr(motion_squeeze, 'recomputed_conv_bn_relu',
                            lambda block, features: block(features).clone())
        expected = outputs_and_gradients(kept, x, grad_out)
        kept_bytes = saved_for_backward_bytes(kept, x)
    tolerance = 1e-10 if input_stats else 0
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)
    for a, b in zip(recomputed.buffers(), kept.buffers()):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)
    if not autocast:  # (autocast keeps bfloat16 copies of its own)
        # Less the (64, 64) covariance of its input that the input-stats
        # Function keeps.
        covariance = 64 * 64 if input_stats else 0
        assert kept_bytes - recomputed_bytes >= \
            (2 * x.numel() - covariance) * x.element_size()


def test_with_cp_follows_the_backbone():
    backbone = MSResNetTSM(50, num_segments=4, pretrained=None, with_cp=True)
    assert backbone.ms_layer2.with_cp
    assert not MSResNetTSM(50, num_segments=4, pretrained=None,
                           with_cp=True,
                           ms_cfg=dict(with_cp=False)).ms_layer2.with_cp
    assert not MSResNetTSM(18, num_segments=4,
                           pretrained=None).ms_layer2.with_cp


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_segments=1), 'num_segments >= 2'),
    (dict(with_cp='yes'), "with_cp must be True or False, got 'yes'"),
    (dict(patch_size=14), 'odd number'),
    (dict(patch_size=0), 'odd number'),
    (dict(patch_size=-3), 'odd number'),
    (dict(sigma=0), 'sigma must be positive'),
])
def test_construction_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MotionSqueeze(64, **kwargs)


def test_run_time_errors_name_the_numbers():
    ms = MotionSqueeze(16, num_segments=8)
    with pytest.raises(ValueError, match='12 frames.*num_segments=8'):
        ms(torch.randn(12, 16, 6, 6))
    with pytest.raises(ValueError, match='in_channels=16, got 8'):
        ms(torch.randn(8, 8, 6, 6))
    with pytest.raises(ValueError, match='5-D'):
        ms(torch.randn(1, 16, 8, 6, 6))
    with pytest.raises(ValueError, match='out_channels == in_channels'):
        MotionSqueeze(16, out_channels=4)(torch.randn(8, 16, 6, 6))
    with pytest.raises(ValueError, match='same shape'):
        local_correlation(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 4), 1)


@pytest.fixture
def full_float32_on_cuda():
    """cuDNN convolutions (and, if enabled, matrix products) round float32
    to TF32 by default; a comparison with the CPU needs full float32."""
    settings = (torch.backends.cudnn.allow_tf32,
                torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    (torch.backends.cudnn.allow_tf32,
     torch.backends.cuda.matmul.allow_tf32) = settings


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('with_cp', [False, True])
def test_motion_squeeze_on_cuda_matches_the_cpu(with_cp, full_float32_on_cuda):
    """The module on CUDA ('auto': a compiled kernel if one passes its check,
    else 'fast'), output and gradients against the same weights on the
    CPU."""
    torch.manual_seed(0)
    cpu = MotionSqueeze(32, num_segments=4, with_cp=with_cp)
    gpu = MotionSqueeze(32, num_segments=4, with_cp=with_cp).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.randn(8, 32, 14, 14)
    grad_out = torch.randn(8, 32, 14, 14)
    expected = outputs_and_gradients(cpu, x, grad_out)
    got = outputs_and_gradients(gpu, x.cuda(), grad_out.cuda())
    scale = max(float(t.abs().max()) for t in expected)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.cpu(), b, rtol=1e-4, atol=1e-4 * scale)
