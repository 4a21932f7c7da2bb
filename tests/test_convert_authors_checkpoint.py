"""tools/convert_authors_checkpoint.py and msnet_plugin.convert on state
dicts in the authors' layout (arunos728/MotionSqueeze: DataParallel(TSN)
around their resnet_TSM.py), written out here from that description."""
import copy
import functools
import os

import numpy as np
import pytest
import torch
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from msnet_plugin.convert import convert_authors_checkpoint
from msnet_plugin.errors import (AuthorsCheckpointError, CheckpointFileError,
                                 ConfigMismatchError)

from repo_paths import DEMO_CONFIG, REPO, STHV2_CONFIG

R18_CONFIG = DEMO_CONFIG  # 4 classes
R50_CONFIG = STHV2_CONFIG  # 174 classes
STHV1_PAPER_CONFIG = (REPO / 'configs' / 'paper' /
                      'msnet_tsm_r50_sthv1_paper.py')  # R50, 174 classes
BN = ('weight', 'bias', 'running_mean', 'running_var', 'num_batches_tracked')


def authors_shapes(depth, num_classes, dropout=True, ms=True):
    """{key: shape} of the authors' DataParallel(TSN).state_dict()."""
    basic = depth == 18
    stage_blocks = (2, 2, 2, 2) if basic else (3, 4, 6, 3)
    expansion = 1 if basic else 4
    shapes = {}

    def conv(name, out_c, in_c, k):
        shapes[f'{name}.weight'] = (out_c, in_c, k, k)

    def bn(name, channels):
        for param in BN:
            shapes[f'{name}.{param}'] = (
                () if param == 'num_batches_tracked' else (channels, ))

    conv('conv1', 64, 3, 7)
    bn('bn1', 64)
    bn('bn2', 128)  # built, never used
    inplanes = 64
    for stage, (planes, blocks) in enumerate(
            zip((64, 128, 256, 512), stage_blocks), 1):
        for index in range(blocks):
            block = f'layer{stage}.{index}'
            if basic:
                conv(f'{block}.conv1', planes, inplanes, 3)
                conv(f'{block}.conv2', planes, planes, 3)
                bn(f'{block}.bn1', planes)
                bn(f'{block}.bn2', planes)
            else:
                conv(f'{block}.conv1', planes, inplanes, 1)
                conv(f'{block}.conv2', planes, planes, 3)
                conv(f'{block}.conv3', planes * 4, planes, 1)
                for k, channels in ((1, planes), (2, planes),
                                    (3, planes * 4)):
                    bn(f'{block}.bn{k}', channels)
            if index == 0 and (stage > 1 or inplanes != planes * expansion):
                conv(f'{block}.downsample.0', planes * expansion, inplanes, 1)
                bn(f'{block}.downsample.1', planes * expansion)
            inplanes = planes * expansion
    if ms:
        layer2 = 128 * expansion
        conv('chnl_reduction.0', 64, layer2, 1)
        bn('chnl_reduction.1', 64)
        for k, (in_c, out_c, size) in enumerate(
                ((3, 16, 7), (16, 32, 3), (32, 64, 3), (64, layer2, 3)), 1):
            shapes[f'flow_refinement.conv{k}.0.weight'] = (in_c, 1, size,
                                                           size)
            bn(f'flow_refinement.conv{k}.1', in_c)
            conv(f'flow_refinement.conv{k}.3', out_c, in_c, 1)
            bn(f'flow_refinement.conv{k}.4', out_c)
    shapes = {f'module.base_model.{k}': v for k, v in shapes.items()}
    fc = 'module.new_fc' if dropout else 'module.base_model.fc1'
    shapes[f'{fc}.weight'] = (num_classes, 512 * expansion, 1)
    shapes[f'{fc}.bias'] = (num_classes, )
    return shapes


def authors_checkpoint(depth, num_classes, seed=0, **kwargs):
    """A checkpoint as their save_checkpoint writes it, every tensor a
    distinct random value (variances positive, counters distinct)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for index, (key, shape) in enumerate(
            authors_shapes(depth, num_classes, **kwargs).items()):
        if key.endswith('num_batches_tracked'):
            state[key] = torch.tensor(1000 + index)
        elif key.endswith('running_var'):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.1
    return dict(epoch=40, arch='MS', state_dict=state, best_prec1=51.25)


def expected_plugin_key(authors_key):
    """Where an authors' tensor belongs in this plugin's recognizer (TSM's
    shift wraps conv1 of every block: ``conv1.conv.net``)."""
    key = authors_key.replace('module.', '', 1)
    if key.startswith('new_fc.') or key.startswith('base_model.fc1.'):
        return 'cls_head.fc_cls.' + key.rsplit('.', 1)[1]
    key = key.replace('base_model.', '', 1)
    parts = key.split('.')
    if parts[0] == 'conv1':
        return 'backbone.conv1.conv.weight'
    if parts[0] == 'bn1':
        return f'backbone.conv1.bn.{parts[1]}'
    if parts[0].startswith('layer'):
        layer, block, name = parts[:3]
        rest = '.'.join(parts[3:])
        if name == 'downsample':
            module = {'0': 'conv', '1': 'bn'}[parts[3]]
            return (f'backbone.{layer}.{block}.downsample.{module}.'
                    f'{parts[4]}')
        if name.startswith('conv'):
            net = '.net' if name == 'conv1' else ''
            return f'backbone.{layer}.{block}.{name}.conv{net}.{rest}'
        return f'backbone.{layer}.{block}.conv{name[2:]}.bn.{rest}'
    if parts[0] == 'chnl_reduction':
        return f'backbone.ms_layer2.reduce.{parts[1]}.{parts[2]}'
    if parts[0] == 'flow_refinement':
        stage = int(parts[1][4:]) - 1
        where = {'0': '0.0', '1': '0.1', '3': '1.0', '4': '1.1'}[parts[2]]
        return (f'backbone.ms_layer2.transform.{stage}.{where}.'
                f'{parts[3]}')
    raise AssertionError(f'no place for {authors_key}')


@functools.lru_cache(maxsize=None)
def _parse(path):
    return Config.fromfile(path)


def load_config(path):
    """A fresh copy of the config at ``path`` (parsed once)."""
    return copy.deepcopy(_parse(str(path)))


def build(config):
    cfg = load_config(config)
    cfg.model.backbone.pretrained = None
    return MODELS.build(cfg.model).eval()


def save(tmp_path, checkpoint, name='authors.pth.tar'):
    path = tmp_path / name
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize('depth,config,classes', [
    (18, R18_CONFIG, 4),
    pytest.param(50, STHV1_PAPER_CONFIG, 174, marks=pytest.mark.slow)
])
def test_every_tensor_lands_where_it_belongs(depth, config, classes,
                                            tmp_path, load_tool, capsys,
                                            one_thread):
    """tools/convert_authors_checkpoint.py SRC DST --config CONFIG."""
    checkpoint = authors_checkpoint(depth, classes)
    src, dst = save(tmp_path, checkpoint), tmp_path / 'msnet.pth'
    conversion = load_tool('convert_authors_checkpoint').main(
        [str(src), str(dst), '--config', str(config)])
    assert f'wrote {dst}' in capsys.readouterr().out
    model = build(config)
    # mmengine's loader, strict: no missing and no unexpected key.
    load_checkpoint(model, str(dst), map_location='cpu', strict=True)
    loaded = model.state_dict()
    used = 0
    for key, value in checkpoint['state_dict'].items():
        if key.startswith('module.base_model.bn2.'):
            continue
        target = expected_plugin_key(key)
        expected = value[:, :, 0] if key.endswith('new_fc.weight') else value
        assert torch.equal(loaded[target], expected), (key, target)
        used += 1
    assert used == len(loaded)  # every tensor of the model filled
    assert conversion.unused == sorted(f'module.base_model.bn2.{p}'
                                       for p in BN)
    saved = torch.load(dst, map_location='cpu', weights_only=True)
    assert saved['meta']['authors_epoch'] == 40
    assert saved['meta']['authors_best_prec1'] == 51.25
    assert saved['meta']['authors_arch'] == 'MS'


def test_all_distinct_values():
    """The test above can tell tensors apart: no two are equal."""
    state = authors_checkpoint(18, 4)['state_dict']
    values = {v.numpy().tobytes() for v in state.values()}
    assert len(values) == len(state)


def place_by_hand(model, state):
    """Copy the authors' tensors into the model module by module."""
    state = {k.replace('module.', '', 1): v for k, v in state.items()}

    def put_bn(bn, prefix):
        for param in BN:
            getattr(bn, param).copy_(state[f'{prefix}.{param}'])

    backbone = model.backbone
    with torch.no_grad():
        backbone.conv1.conv.weight.copy_(state['base_model.conv1.weight'])
        put_bn(backbone.conv1.bn, 'base_model.bn1')
        for stage in range(1, 5):
            for index, block in enumerate(getattr(backbone, f'layer{stage}')):
                prefix = f'base_model.layer{stage}.{index}'
                for k in (1, 2, 3) if hasattr(block, 'conv3') else (1, 2):
                    conv_module = getattr(block, f'conv{k}')
                    conv = getattr(conv_module.conv, 'net', conv_module.conv)
                    conv.weight.copy_(state[f'{prefix}.conv{k}.weight'])
                    put_bn(conv_module.bn, f'{prefix}.bn{k}')
                if block.downsample is not None:
                    block.downsample.conv.weight.copy_(
                        state[f'{prefix}.downsample.0.weight'])
                    put_bn(block.downsample.bn, f'{prefix}.downsample.1')
        ms = backbone.ms_layer2
        ms.reduce[0].weight.copy_(state['base_model.chnl_reduction.0.weight'])
        put_bn(ms.reduce[1], 'base_model.chnl_reduction.1')
        for k, (depthwise, pointwise) in enumerate(ms.transform, 1):
            prefix = f'base_model.flow_refinement.conv{k}'
            depthwise[0].weight.copy_(state[f'{prefix}.0.weight'])
            put_bn(depthwise[1], f'{prefix}.1')
            pointwise[0].weight.copy_(state[f'{prefix}.3.weight'])
            put_bn(pointwise[1], f'{prefix}.4')
        model.cls_head.fc_cls.weight.copy_(state['new_fc.weight'][..., 0])
        model.cls_head.fc_cls.bias.copy_(state['new_fc.bias'])


@pytest.mark.parametrize('depth,config,classes,size', [
    (18, R18_CONFIG, 4, 64),
    pytest.param(50, R50_CONFIG, 174, 32, marks=pytest.mark.slow)
])
def test_converted_scores_equal_hand_placed_weights(depth, config, classes,
                                                    size, tmp_path,
                                                    one_thread):
    checkpoint = authors_checkpoint(depth, classes, seed=1)
    src, dst = save(tmp_path, checkpoint), tmp_path / 'msnet.pth'
    convert_authors_checkpoint(str(src), str(dst), load_config(config))
    converted, by_hand, fresh = build(config), build(config), build(config)
    load_checkpoint(converted, str(dst), map_location='cpu', strict=True)
    place_by_hand(by_hand, checkpoint['state_dict'])
    torch.manual_seed(0)
    # (N=1, T=8, 3, H, W) normalised frames, as the data preprocessor
    # gives them.
    frames = torch.randn(1, 8, 3, size, size)
    def class_scores(model):
        with torch.no_grad():
            return model.extract_feat(frames, stage='head', test_mode=True)[0]

    scores = class_scores(converted)
    assert scores.shape == (1, classes)
    torch.testing.assert_close(scores, class_scores(by_hand), rtol=0, atol=0)
    assert not torch.allclose(scores, class_scores(fresh))


def test_classifier_without_dropout_is_base_model_fc1(tmp_path):
    checkpoint = authors_checkpoint(18, 4, dropout=False)
    dst = tmp_path / 'msnet.pth'
    convert_authors_checkpoint(str(save(tmp_path, checkpoint)), str(dst),
                               load_config(R18_CONFIG))
    state = torch.load(dst, weights_only=True)['state_dict']
    assert torch.equal(
        state['cls_head.fc_cls.weight'],
        checkpoint['state_dict']['module.base_model.fc1.weight'][..., 0])


@pytest.mark.slow
def test_tool_converts_r18_for_an_r50_config_changed_by_options(
        tmp_path, load_tool, capsys):
    """The authors' released script builds ResNet-18: a 174-class one for
    the Something-Something config with depth and head width changed (the
    command of docs/paper.md), with num_batches_tracked absent and an
    unknown key added."""
    checkpoint = authors_checkpoint(18, 174)
    checkpoint['state_dict'] = {
        k: v for k, v in checkpoint['state_dict'].items()
        if not k.endswith('num_batches_tracked')
    }
    checkpoint['state_dict']['module.base_model.extra.weight'] = torch.ones(1)
    src, dst = save(tmp_path, checkpoint), tmp_path / 'msnet.pth'
    changes = {'model.backbone.depth': 18, 'model.cls_head.in_channels': 512}
    options = [f'{key}={value}' for key, value in changes.items()]
    conversion = load_tool('convert_authors_checkpoint').main([
        str(src), str(dst), '--config', str(STHV1_PAPER_CONFIG),
        '--cfg-options', *options
    ])
    out = capsys.readouterr().out
    cfg = load_config(STHV1_PAPER_CONFIG)
    cfg.merge_from_dict(changes)
    cfg.model.backbone.pretrained = None
    model = MODELS.build(cfg.model).eval()
    assert model.backbone.depth == 18  # the options reached the model
    load_checkpoint(model, str(dst), map_location='cpu', strict=True)
    counters = [k for k in model.state_dict() if 'num_batches_tracked' in k]
    assert sorted(conversion.zero_counters) == sorted(counters)
    assert all(model.state_dict()[k] == 0 for k in counters)
    assert f'set {len(counters)} BatchNorm num_batches_tracked' in out
    # Every unused key is named, one per line.
    unused = [
        'module.base_model.bn2.bias', 'module.base_model.bn2.running_mean',
        'module.base_model.bn2.running_var', 'module.base_model.bn2.weight',
        'module.base_model.extra.weight'
    ]
    assert f'unused keys of SRC ({len(unused)}):\n' + ''.join(
        f'  {key}\n' for key in sorted(unused)) in out
    assert f'wrote {dst}' in out
    assert 'ResNet-18 (BasicBlock, blocks 2-2-2-2)' in out


def assert_refused(tmp_path, src, config, error_type, *phrases):
    """The conversion fails with ``error_type`` naming SRC and every
    phrase; DST keeps its old content and nothing else is left behind."""
    dst = tmp_path / 'out' / 'msnet.pth'
    dst.parent.mkdir(exist_ok=True)
    dst.write_bytes(b'previous checkpoint')
    with pytest.raises(error_type) as info:
        convert_authors_checkpoint(str(src), str(dst), config)
    message = str(info.value)
    for phrase in (str(src), ) + phrases:
        assert phrase in message, (phrase, message)
    assert dst.read_bytes() == b'previous checkpoint'
    assert os.listdir(dst.parent) == ['msnet.pth']
    return message


def test_r18_checkpoint_refused_for_r50_config_listing_each_difference(
        tmp_path):
    src = save(tmp_path, authors_checkpoint(18, 4))
    message = assert_refused(
        tmp_path, src, load_config(R50_CONFIG), ConfigMismatchError,
        str(R50_CONFIG), 'ResNet-18',
        'depth: checkpoint ResNet-18, config model.backbone.depth=50',
        'MotionSqueeze input channels: checkpoint 128, config 512',
        'MotionSqueeze output channels: checkpoint 128, config 512',
        'classes: checkpoint 4, config model.cls_head.num_classes=174',
        'head input channels: checkpoint 512, config '
        'model.cls_head.in_channels=2048')
    assert isinstance(ConfigMismatchError(), ValueError)
    assert len(message.splitlines()) == 6  # the summary and 5 differences


def test_class_count_mismatch_alone(tmp_path):
    src = save(tmp_path, authors_checkpoint(18, 5))
    message = assert_refused(
        tmp_path, src, load_config(R18_CONFIG), ConfigMismatchError,
        'classes: checkpoint 5, config model.cls_head.num_classes=4')
    assert len(message.splitlines()) == 2


def test_ms_settings_the_weights_do_not_show_are_checked(tmp_path):
    cfg = load_config(R18_CONFIG)
    cfg.model.backbone.ms_cfg = dict(patch_size=9, temperature=50.0)
    cfg.model.backbone.shift_div = 4
    src = save(tmp_path, authors_checkpoint(18, 4))
    assert_refused(tmp_path, src, cfg, ConfigMismatchError,
                   "patch_size: the authors' network has 15, config 9",
                   "temperature: the authors' network has 100.0, config 50.0",
                   "shift_div=8, config model.backbone.shift_div=4")


def test_config_without_motion_squeeze_is_refused(tmp_path):
    cfg = load_config(R18_CONFIG)
    cfg.model.backbone.ms_stages = ()
    src = save(tmp_path, authors_checkpoint(18, 4))
    assert_refused(tmp_path, src, cfg, ConfigMismatchError,
                   "MotionSqueeze: the authors' network has one, after "
                   "layer2; the config's model has 0")


def test_tsm_checkpoint_without_motion_squeeze_is_refused(tmp_path):
    src = save(tmp_path, authors_checkpoint(18, 4, ms=False))
    assert_refused(tmp_path, src, load_config(R18_CONFIG), ConfigMismatchError,
                   'MotionSqueeze: the checkpoint has none')


def test_plugin_checkpoint_is_not_an_authors_checkpoint(tmp_path):
    model = build(R18_CONFIG)
    src = save(tmp_path, dict(meta={}, state_dict=model.state_dict()))
    assert_refused(tmp_path, src, load_config(R18_CONFIG),
                   AuthorsCheckpointError, 'no "base_model." keys')


def test_unreadable_file_is_refused(tmp_path):
    src = tmp_path / 'notes.pth.tar'
    src.write_text('not a checkpoint')
    assert_refused(tmp_path, src, load_config(R18_CONFIG),
                   CheckpointFileError, 'is not a PyTorch file')


def test_missing_files_and_dst_equal_to_src(tmp_path):
    src = save(tmp_path, authors_checkpoint(18, 4))
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        convert_authors_checkpoint(str(tmp_path / 'absent.pth.tar'),
                                   str(tmp_path / 'x.pth'), str(R18_CONFIG))
    with pytest.raises(FileNotFoundError, match='config not found'):
        convert_authors_checkpoint(str(src), str(tmp_path / 'x.pth'),
                                   str(tmp_path / 'absent.py'))
    before = src.read_bytes()
    with pytest.raises(AuthorsCheckpointError, match='DST is SRC'):
        convert_authors_checkpoint(str(src), str(src), str(R18_CONFIG))
    assert src.read_bytes() == before


@pytest.mark.parametrize('config', [R18_CONFIG, R50_CONFIG])
def test_authors_normalisation_equals_the_data_preprocessor(config):
    """Their inputs: 0-1 images normalised with ImageNet's mean and std
    (ToTorchFormatTensor(div=True), GroupNormalize). MMAction2's: 0-255
    images through the config's data_preprocessor."""
    cfg = load_config(config)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, size=(8, 3, 24, 24), dtype=np.uint8)
    ours = preprocessor(
        dict(inputs=[torch.from_numpy(clip)], data_samples=None))['inputs'][0]
    mean = np.array([0.485, 0.456, 0.406])[None, :, None, None]
    std = np.array([0.229, 0.224, 0.225])[None, :, None, None]
    theirs = (clip / 255.0 - mean) / std
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=0, atol=1e-5)
