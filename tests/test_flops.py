"""FLOP counting with the correlation handle, and tools/get_flops.py."""
import torch
from mmengine.analysis import FlopAnalyzer

from msnet_plugin.flops import model_complexity
from msnet_plugin.models import MotionSqueeze

from repo_paths import DEMO_CONFIG


def test_correlation_counted_as_channels_times_window_times_pixels():
    torch.manual_seed(0)
    ms = MotionSqueeze(16, num_segments=4, reduced_channels=8, patch_size=5)
    info = model_complexity(ms, (8, 16, 10, 12))
    # 2 clips x 3 pairs, 8 channels, 5x5 window, 10x12 positions.
    assert info['correlation_flops'] == 2 * 3 * 8 * 25 * 10 * 12
    assert info['params'] == sum(p.numel() for p in ms.parameters())
    # mmengine's counter alone counts the traced strip product (pairs
    # outside the window included) as the correlation: model_complexity
    # replaces exactly that, nothing else changes.
    plain = FlopAnalyzer(ms.eval(), (torch.randn(8, 16, 10, 12), ))
    plain.unsupported_ops_warnings(False)
    strip_product = plain.by_operator()['bmm']
    assert strip_product > info['correlation_flops']
    assert (info['flops'] - (plain.total() - strip_product) ==
            info['correlation_flops'])
    # The count does not depend on the kernel.
    reference = MotionSqueeze(16, num_segments=4, reduced_channels=8,
                              patch_size=5, correlation_impl='reference')
    assert model_complexity(reference, (8, 16, 10, 12)) == info
    # The count runs in eval mode and leaves the module's mode as it was.
    ms.train()
    model_complexity(ms, (8, 16, 10, 12))
    assert ms.training


def test_get_flops_tool_on_the_demo_config(capsys, load_tool):
    info = load_tool('get_flops').main(
        [str(DEMO_CONFIG), '--num-frames', '4', '--shape', '32'])
    # layer2 of R18 at 32 px: 4x4 maps, 64 reduced channels, 15x15, 3 pairs.
    assert info['correlation_flops'] == 64 * 225 * 16 * 3
    out = capsys.readouterr().out
    assert 'Input shape: (1, 4, 3, 32, 32)' in out
    assert f'Params: {info["params"] / 1e6:.3f} M' in out
