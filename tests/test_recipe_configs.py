"""What each recipe config inherits and what it changes; every config
builds its model (no model runs)."""
import re

import pytest
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.hub import get_config

from repo_paths import REPO

CONFIGS = REPO / 'configs'
TSM_STHV2 = 'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb.py'
TSM_K400 = ('tsm_imagenet-pretrained-r50_8xb16-dense-1x1x8-50e_'
            'kinetics400-rgb.py')
MMACTION_STHV1_FLIP = (
    'mmaction::recognition/tanet/'
    'tanet_imagenet-pretrained-r50_8xb8-1x1x8-50e_sthv1-rgb.py')

# Something-Something V2 labels that name a horizontal direction, by their
# index in the official something-something-v2-labels.json (alphabetical).
# The only other label with "left"/"right" in it, 50 "Plugging something
# into something but pulling it right out as you remove your hand", names
# no direction and must stay unmapped.
STHV2_DIRECTIONAL_LABELS = {
    86: 'Pulling something from left to right',
    87: 'Pulling something from right to left',
    93: 'Pushing something from left to right',
    94: 'Pushing something from right to left',
    166: 'Turning the camera left while filming something',
    167: 'Turning the camera right while filming something',
}


def mirrored(name):
    """A label name with left and right swapped."""
    return re.sub(r'\b(left|right)\b',
                  lambda m: 'right' if m.group(1) == 'left' else 'left', name)


def flip_maps(cfg):
    return [step.get('flip_label_map') for step in
            cfg.train_dataloader.dataset.pipeline if step.type == 'Flip']


def sampling(pipeline):
    return [step for step in pipeline if 'SampleFrames' in step['type']]


def as_8_frames(cfg, without_scope):
    """The parts of a 16-frame config that its 8-frame config must share,
    with its segment counts and sampled clips set back to 8."""
    data = without_scope(cfg.to_dict())
    for key in ('backbone', 'cls_head'):
        assert data['model'][key].pop('num_segments') == 16
    for split in ('train', 'val', 'test'):
        for step in sampling(data[f'{split}_dataloader']['dataset']
                             ['pipeline']):
            assert step['num_clips'] == 16
            step['num_clips'] = 8
    return {k: data[k] for k in ('model', 'train_dataloader',
                                 'val_dataloader', 'test_dataloader',
                                 'optim_wrapper', 'param_scheduler',
                                 'train_cfg', 'default_hooks')}


@pytest.mark.parametrize('config', sorted(CONFIGS.glob('*.py')),
                         ids=lambda config: config.stem)
def test_every_config_loads_and_builds(config):
    cfg = Config.fromfile(config)
    assert cfg.custom_imports == dict(imports=['msnet_plugin'],
                                      allow_failed_imports=False)
    cfg.model.backbone.pretrained = None
    model = MODELS.build(cfg.model)
    assert any(name.startswith(('backbone.ms_layer', 'neck.motion_squeeze'))
               for name, _ in model.named_parameters())


@pytest.mark.parametrize('name', ['sthv1', 'sthv2', 'k400'])
def test_16_frame_configs_change_only_segments_and_sampling(name,
                                                           without_scope):
    eight = Config.fromfile(CONFIGS / f'msnet_tsm_r50_{name}.py')
    sixteen = Config.fromfile(CONFIGS / f'msnet_tsm_r50_{name}_16f.py')
    expected = without_scope(eight.to_dict())
    for key in ('backbone', 'cls_head'):
        assert expected['model'][key].pop('num_segments', 8) == 8
    shared = as_8_frames(sixteen, without_scope)
    assert shared == {k: expected[k] for k in shared}


@pytest.mark.parametrize('name, base', [
    ('sthv1', TSM_STHV2),  # MMAction2 has no TSM sthv1 recipe
    ('sthv2', TSM_STHV2),
    ('k400', TSM_K400),
])
def test_8_frame_configs_are_mmaction_tsm_plus_ms(name, base, without_scope):
    cfg = without_scope(
        Config.fromfile(CONFIGS / f'msnet_tsm_r50_{name}.py').to_dict())
    zoo = without_scope(
        get_config(f'mmaction::recognition/tsm/{base}').to_dict())
    backbone = cfg['model'].pop('backbone')
    assert backbone.pop('type') == 'MSResNetTSM'
    assert backbone.pop('ms_stages') == [1] and backbone.pop('ms_cfg') == {}
    zoo_backbone = zoo['model'].pop('backbone')
    assert zoo_backbone.pop('type') == 'ResNetTSM'
    assert backbone == zoo_backbone
    for key in ('model', 'optim_wrapper', 'param_scheduler', 'train_cfg',
                'auto_scale_lr'):
        assert cfg[key] == zoo[key], key
    # The one change to the hooks: checkpoints are written atomically.
    assert cfg['default_hooks']['checkpoint'].pop('backend_args') == dict(
        backend='atomic_local')
    assert cfg['default_hooks'] == zoo['default_hooks']
    if name == 'sthv1':  # the sthv2 recipe on sthv1's rawframes
        dataset = cfg['train_dataloader']['dataset']
        assert dataset['type'] == 'CheckedRawframeDataset'
        assert dataset['data_prefix'] == dict(img='data/sthv1/rawframes')
        return
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key] == zoo[key], key
    assert cfg['custom_hooks'] == [
        dict(type='CheckpointMatchHook', refuse=False),
        dict(type='CheckInvalidLossHook', interval=1)
    ]


def test_kinetics_is_dense_without_label_flip():
    for name in ('k400', 'k400_16f', 'hmdb51_ft'):
        cfg = Config.fromfile(CONFIGS / f'msnet_tsm_r50_{name}.py')
        for split in ('train', 'val', 'test'):
            steps = sampling(cfg[f'{split}_dataloader'].dataset.pipeline)
            assert [s.type for s in steps] == ['DenseSampleFrames'], name
        assert flip_maps(cfg) == [None], name


def test_sthv2_flip_label_map_swaps_mirror_labels():
    for name in ('msnet_tsm_r50_sthv2', 'msnet_tsm_r50_sthv2_16f',
                 'msnet_tsm_r50_trnhead_sthv2', 'msnet_neck_tsn_r50_sthv2'):
        (flip_map, ) = flip_maps(Config.fromfile(CONFIGS / f'{name}.py'))
        assert set(flip_map) == set(STHV2_DIRECTIONAL_LABELS), name
        for label, flipped in flip_map.items():
            assert STHV2_DIRECTIONAL_LABELS[flipped] == mirrored(
                STHV2_DIRECTIONAL_LABELS[label]), (label, flipped)


def test_sthv1_flip_label_map_is_mmactions_and_swaps_pairs():
    reference = get_config(MMACTION_STHV1_FLIP).train_pipeline
    (reference_map, ) = [s.flip_label_map for s in reference
                         if s.type == 'Flip']
    for name in ('sthv1', 'sthv1_16f'):
        (flip_map, ) = flip_maps(
            Config.fromfile(CONFIGS / f'msnet_tsm_r50_{name}.py'))
        assert flip_map == reference_map
        assert all(flip_map[flip_map[a]] == a != flip_map[a]
                   for a in flip_map)
        assert all(0 <= a < 174 for a in flip_map)


def test_mixed_configs_put_ms_into_mmaction_models():
    tsn = Config.fromfile(CONFIGS / 'msnet_neck_tsn_r50_sthv2.py').model
    assert (tsn.backbone.type, tsn.neck.type, tsn.cls_head.type) == (
        'ResNet', 'MotionSqueezeNeck', 'TSNHead')
    trn = Config.fromfile(CONFIGS / 'msnet_tsm_r50_trnhead_sthv2.py').model
    assert (trn.backbone.type, trn.cls_head.type) == ('MSResNetTSM',
                                                      'TRNHead')
    assert trn.backbone.num_segments == trn.cls_head.num_segments == 8
    mobile = Config.fromfile(
        CONFIGS / 'msnet_neck_tsm_mobilenetv2_k400.py').model
    assert (mobile.backbone.type, mobile.neck.type, mobile.cls_head.type) == (
        'MobileNetV2TSM', 'MotionSqueezeNeck', 'TSMHead')
    assert mobile.neck.temporal_avg is False
