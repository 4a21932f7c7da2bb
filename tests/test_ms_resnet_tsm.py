"""MSResNetTSM: structure, parameter cost, shapes, init, errors."""
import pytest
import torch
from mmaction.models import ResNetTSM
from mmaction.registry import MODELS

from msnet_plugin.models import MotionSqueeze, MSResNetTSM


def num_params(module):
    return sum(p.numel() for p in module.parameters())


def expected_ms_params(in_channels, reduced=64):
    """Parameters of the paper's module: reduction plus four separable stages."""
    reduction = in_channels * reduced + 2 * reduced
    stages = [(7, 3, 16), (3, 16, 32), (3, 32, 64), (3, 64, in_channels)]
    transformation = sum(k * k * cin + 2 * cin + cin * cout + 2 * cout
                         for k, cin, cout in stages)
    return reduction + transformation


def test_msnet_r50_adds_exactly_the_spec_parameters():
    msnet = MSResNetTSM(50, pretrained=None)
    tsm = ResNetTSM(50, pretrained=None, pretrained2d=False)
    extra = num_params(msnet) - num_params(tsm)
    assert extra == expected_ms_params(512) == 70905
    assert num_params(msnet.ms_layer2.reduce) == 32896  # "about 33 K"
    assert num_params(msnet.ms_layer2.transform) == 38009  # "about 38 K"


def test_output_shapes_equal_resnet_tsm():
    torch.manual_seed(0)
    frames = torch.randn(8, 3, 64, 64)
    for depth in (18, 50):
        msnet = MSResNetTSM(depth, num_segments=4, pretrained=None,
                            out_indices=(2, 3))
        tsm = ResNetTSM(depth, num_segments=4, pretrained=None,
                        pretrained2d=False, out_indices=(2, 3))
        with torch.no_grad():
            ms_out, tsm_out = msnet(frames), tsm(frames)
        assert [o.shape for o in ms_out] == [o.shape for o in tsm_out]


def test_ms_sits_after_the_chosen_stages_and_feeds_the_next():
    msnet = MSResNetTSM(18, num_segments=4, pretrained=None,
                        ms_stages=(0, 2), out_indices=(0, 2))
    msnet.eval()  # mmaction's ResNet.train() returns None: no chaining
    assert [m.in_channels for m in msnet.motion_squeezes()] == [64, 256]
    frames = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        x = msnet.maxpool(msnet.conv1(frames))
        layer1 = msnet.ms_layer1(msnet.layer1(x))
        layer3 = msnet.ms_layer3(msnet.layer3(msnet.layer2(layer1)))
        out1, out3 = msnet(frames)
    torch.testing.assert_close(out1, layer1)
    torch.testing.assert_close(out3, layer3)


def test_ms_cfg_overrides_reach_the_module():
    msnet = MSResNetTSM(
        18, pretrained=None,
        ms_cfg=dict(reduced_channels=32, patch_size=9, sigma=3.0,
                    temperature=50.0))
    ms = msnet.ms_layer2
    assert isinstance(ms, MotionSqueeze) and ms.in_channels == 128
    assert (ms.reduce[0].out_channels, ms.patch_size, ms.sigma,
            ms.temperature) == (32, 9, 3.0, 50.0)


class DoubledMotionSqueeze(MotionSqueeze):
    """A user's variant: adds the motion features twice."""

    def forward(self, x):
        return x + 2 * self.motion_features(x)


def test_ms_cfg_type_builds_a_registered_subclass_through_the_registry():
    MODELS.register_module(module=DoubledMotionSqueeze, force=True)
    try:
        torch.manual_seed(0)
        msnet = MSResNetTSM(18, pretrained=None, num_segments=4,
                            ms_cfg=dict(type='DoubledMotionSqueeze',
                                        patch_size=5))
    finally:
        MODELS.module_dict.pop('DoubledMotionSqueeze')
    module = msnet.ms_layer2
    assert type(module) is DoubledMotionSqueeze
    assert (module.in_channels, module.num_segments,
            module.patch_size) == (128, 4, 5)
    features = torch.randn(8, 128, 8, 8)
    expected = features + 2 * module.motion_features(features)
    torch.testing.assert_close(module(features), expected)


def test_gradients_reach_every_ms_parameter():
    torch.manual_seed(0)
    msnet = MSResNetTSM(18, num_segments=4, pretrained=None)
    msnet(torch.randn(8, 3, 64, 64)).mean().backward()
    for name, param in msnet.ms_layer2.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_ms_gets_paper_init_after_loading_2d_weights(tmp_path):
    """ResNetTSM's 2D-weight loading leaves new modules alone; MS is re-inited."""
    torch.manual_seed(0)
    msnet = MSResNetTSM(18, pretrained=str(tmp_path / 'r18.pth'))
    # An ImageNet-style (torchvision layout) file, written here.
    state = {'conv1.weight': torch.randn(64, 3, 7, 7),
             'bn1.weight': torch.rand(64), 'bn1.bias': torch.rand(64),
             'bn1.running_mean': torch.rand(64),
             'bn1.running_var': torch.rand(64)}
    torch.save(state, tmp_path / 'r18.pth')
    ms_bn = msnet.ms_layer2.reduce[1]
    with torch.no_grad():
        ms_bn.weight.fill_(3.0)
        msnet.ms_layer2.reduce[0].weight.zero_()
    msnet.init_weights()
    torch.testing.assert_close(msnet.conv1.conv.weight, state['conv1.weight'])
    torch.testing.assert_close(msnet.conv1.bn.running_var,
                               state['bn1.running_var'])
    assert torch.all(ms_bn.weight == 1) and torch.all(ms_bn.bias == 0)
    reduce_weight = msnet.ms_layer2.reduce[0].weight
    # Kaiming-normal, fan_out: std = sqrt(2 / fan_out) = sqrt(2 / 64).
    assert abs(reduce_weight.std().item() - (2 / 64)**0.5) < 0.02


@pytest.mark.parametrize('kwargs,message', [
    (dict(ms_stages=(4, )), 'stage index 4 does not exist'),
    (dict(ms_stages=(-1, )), 'stage index -1 does not exist'),
    (dict(ms_stages=(1, 1)), 'duplicates'),
    (dict(num_segments=1), 'num_segments >= 2'),
    (dict(ms_cfg=dict(patch_size=8)), 'odd number'),
    (dict(ms_cfg=dict(in_channels=256)),
     'in_channels=256 does not match layer2 of ResNet-18, which outputs 128'),
    (dict(ms_cfg=dict(num_segments=16)),
     'ms_cfg.num_segments=16, but model.backbone.num_segments=8 gives 8'),
])
def test_construction_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MSResNetTSM(18, pretrained=None, **kwargs)


def test_frame_count_not_a_multiple_of_segments():
    msnet = MSResNetTSM(18, num_segments=8, pretrained=None)
    with pytest.raises(ValueError, match='12 frames, not a multiple of '
                       'num_segments=8'):
        msnet(torch.randn(12, 3, 32, 32))
    with pytest.raises(ValueError, match='5-D'):
        msnet(torch.randn(1, 8, 3, 32, 32))
