"""The paper's ablations as MotionSqueeze options: shapes, parameter counts,
behaviour on known inputs, and errors."""
import pytest
import torch

from msnet_plugin.models import (MotionSqueeze, MSResNetTSM,
                                 kernel_soft_argmax, plain_soft_argmax)

from slow_references import per_pixel_soft_argmax


def transform_params(in_channels, out_channels):
    """Parameters of the four depthwise-separable stages (conv + BN each)."""
    stages = [(in_channels, 16, 7), (16, 32, 3), (32, 64, 3),
              (64, out_channels, 3)]
    return sum(c * k * k + 2 * c + c * o + 2 * o for c, o, k in stages)


def test_plain_soft_argmax_matches_loop_reference():
    torch.manual_seed(0)
    corr = torch.rand(2, 25, 3, 4)
    disp, conf = plain_soft_argmax(corr, 5, temperature=3.0)
    ref_disp, ref_conf = per_pixel_soft_argmax(corr, 5, temperature=3.0)
    torch.testing.assert_close(disp, ref_disp)
    torch.testing.assert_close(conf, ref_conf)


def test_plain_and_kernel_soft_argmax_differ_on_two_peaks():
    """Two equal-ish peaks: the kernel keeps the stronger one, the plain
    softmax averages them (the paper's reason for the kernel)."""
    patch, d = 15, 7
    corr = torch.zeros(1, patch * patch, 1, 1)
    corr[0, (0 + d) * patch + (6 + d)] = 1.0  # (dy, dx) = (0, +6)
    corr[0, (0 + d) * patch + (-6 + d)] = 0.99  # (dy, dx) = (0, -6)
    plain, _ = plain_soft_argmax(corr, patch, temperature=100.0)
    kernel, _ = kernel_soft_argmax(corr, patch, sigma=2.0, temperature=100.0)
    assert abs(float(plain[0, 0])) < 0.4  # pulled towards the middle
    assert float(kernel[0, 0]) == pytest.approx(6 / 7, abs=0.02)


@pytest.mark.parametrize('options,motion_channels', [
    (dict(), 3),
    (dict(use_confidence=False), 2),
    (dict(soft_argmax='plain'), 3),
    (dict(motion_input='correlation'), 25),
])
def test_ablation_shapes_and_parameter_counts(options, motion_channels):
    torch.manual_seed(0)
    ms = MotionSqueeze(16, num_segments=4, reduced_channels=8, patch_size=5,
                       **options)
    assert ms.motion_channels == motion_channels
    assert ms.transform[0][0][0].in_channels == motion_channels
    assert sum(p.numel() for p in ms.transform.parameters()) == (
        transform_params(motion_channels, 16))
    x = torch.randn(8, 16, 6, 6, requires_grad=True)
    out = ms(x)
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None for p in ms.parameters())


def test_without_confidence_transforms_only_the_displacement():
    torch.manual_seed(0)
    ms = MotionSqueeze(16, num_segments=4, patch_size=5, use_confidence=False)
    ms.eval()
    x = torch.randn(8, 16, 6, 6)
    displacement, _ = ms.estimate_motion(x)
    torch.testing.assert_close(ms.motion_features(x),
                               ms.transform(displacement))


def test_correlation_input_transforms_the_correlation():
    torch.manual_seed(0)
    ms = MotionSqueeze(16, num_segments=4, patch_size=5,
                       motion_input='correlation')
    ms.eval()
    x = torch.randn(8, 16, 6, 6)
    correlation = ms._pair_correlation(x)  # (2 clips * 3 pairs, 25, 6, 6)
    assert correlation.shape == (6, 25, 6, 6)
    per_frame = correlation.view(2, 3, 25, 6, 6)
    per_frame = torch.cat([per_frame, per_frame[:, -1:]], 1).flatten(0, 1)
    torch.testing.assert_close(ms.motion_features(x),
                               ms.transform(per_frame))


def test_plain_soft_argmax_option_changes_only_the_displacement():
    torch.manual_seed(0)
    kernel = MotionSqueeze(16, num_segments=4, patch_size=5)
    plain = MotionSqueeze(16, num_segments=4, patch_size=5,
                          soft_argmax='plain')
    plain.load_state_dict(kernel.state_dict())
    kernel.eval()
    plain.eval()
    x = torch.randn(8, 16, 6, 6)
    kernel_disp, kernel_conf = kernel.estimate_motion(x)
    plain_disp, plain_conf = plain.estimate_motion(x)
    torch.testing.assert_close(kernel_conf, plain_conf)
    assert not torch.allclose(kernel_disp, plain_disp)


def test_ms_after_another_stage():
    backbone = MSResNetTSM(18, num_segments=4, pretrained=None,
                           ms_stages=(0, ))
    ms = backbone.ms_layer1
    assert ms.in_channels == 64 and ms.out_channels == 64
    assert not hasattr(backbone, 'ms_layer2')
    feats = backbone(torch.randn(4, 3, 32, 32))
    assert feats.shape == (4, 512, 1, 1)


@pytest.mark.parametrize('options,message', [
    (dict(soft_argmax='hard'), "soft_argmax must be one of.*'hard'"),
    (dict(motion_input='flow'), "motion_input must be one of.*'flow'"),
])
def test_bad_ablation_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        MotionSqueeze(16, **options)


def test_plain_soft_argmax_rejects_wrong_channel_count():
    with pytest.raises(ValueError, match='24 channels.*5'):
        plain_soft_argmax(torch.zeros(1, 24, 2, 2), 5, 1.0)
