"""The paper-recipe configs (configs/paper/) change their MMAction2-recipe
parents only where the authors' training scripts set something, build their
models, and train and test a step.

The authors' values (arunos728/MotionSqueeze, scripts/train_TSM_*.sh with
the defaults of opts.py, and main_kinetics.py's test) are written out here
once more, plainly, so that a config that drifts from them fails.
"""
import copy
import functools
import os

import pytest
import torch
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.runner import Runner

from msnet_plugin.datasets import generate_rawframe_dataset

from repo_paths import REPO

PAPER = REPO / 'configs' / 'paper'

STH_SCHEDULE = [
    dict(type='MultiStepLR', begin=0, end=40, by_epoch=True,
         milestones=[20, 30], gamma=0.1)
]
K400_SCHEDULE = [
    dict(type='MultiStepLR', begin=0, end=75, by_epoch=True,
         milestones=[30, 60], gamma=0.1)
]
# The authors' Something-Something recipe: the value of every field it sets.
STH_VALUES = {
    'optim_wrapper.optimizer.type': 'SGD',
    'optim_wrapper.optimizer.lr': 0.01,
    'optim_wrapper.optimizer.momentum': 0.9,
    'optim_wrapper.optimizer.nesterov': True,
    'optim_wrapper.optimizer.weight_decay': 5e-4,
    'optim_wrapper.clip_grad.max_norm': 200,
    'auto_scale_lr.enable': True,
    'auto_scale_lr.base_batch_size': 48,
    'train_cfg.max_epochs': 40,
    'param_scheduler': STH_SCHEDULE,
    'model.cls_head.dropout_ratio': 0.5,
}
K400_VALUES = {
    'optim_wrapper.optimizer.type': 'SGD',
    'optim_wrapper.optimizer.lr': 0.02,
    'optim_wrapper.optimizer.momentum': 0.9,
    'optim_wrapper.optimizer.weight_decay': 1e-4,
    'optim_wrapper.clip_grad.max_norm': 20,
    'auto_scale_lr.enable': True,
    'auto_scale_lr.base_batch_size': 96,
    'train_cfg.max_epochs': 75,
    'param_scheduler': K400_SCHEDULE,
    'model.cls_head.dropout_ratio': 0.5,
}
TEST_PIPELINE_KEYS = {'test_pipeline', 'test_dataloader.dataset.pipeline'}
# Keys whose value differs from the parent's (the rest of *_VALUES equals
# MMAction2's already, e.g. Kinetics' lr 0.02 and clip 20).
STH_CHANGED = {
    'optim_wrapper.optimizer.lr', 'optim_wrapper.optimizer.nesterov',
    'optim_wrapper.clip_grad.max_norm', 'auto_scale_lr.enable',
    'auto_scale_lr.base_batch_size', 'train_cfg.max_epochs', 'param_scheduler'
} | TEST_PIPELINE_KEYS
K400_CHANGED = {
    'auto_scale_lr.enable', 'auto_scale_lr.base_batch_size',
    'train_cfg.max_epochs', 'param_scheduler'
} | TEST_PIPELINE_KEYS
HMDB51_CHANGED = {'load_from', 'work_dir'} | TEST_PIPELINE_KEYS

# paper config: (parent, its recipe's values, keys that differ from parent,
# segments, classes).
PAPER_CONFIGS = {
    'msnet_tsm_r50_sthv1_paper':
    ('msnet_tsm_r50_sthv1', STH_VALUES, STH_CHANGED, 8, 174),
    'msnet_tsm_r50_sthv1_16f_paper':
    ('msnet_tsm_r50_sthv1_16f', STH_VALUES, STH_CHANGED, 16, 174),
    'msnet_tsm_r50_sthv2_paper':
    ('msnet_tsm_r50_sthv2', STH_VALUES, STH_CHANGED, 8, 174),
    'msnet_tsm_r50_sthv2_16f_paper':
    ('msnet_tsm_r50_sthv2_16f', STH_VALUES, STH_CHANGED, 16, 174),
    'msnet_tsm_r50_k400_16f_paper':
    ('msnet_tsm_r50_k400_16f', K400_VALUES, K400_CHANGED, 16, 400),
    'msnet_tsm_r50_hmdb51_ft_paper':
    ('msnet_tsm_r50_hmdb51_ft', {}, HMDB51_CHANGED, 16, 51),
}


@functools.lru_cache(maxsize=None)
def _parse(path, hmdb51_split):
    return Config.fromfile(path)


def load(stem):
    """A fresh copy of the config (each is parsed once per environment)."""
    folder = PAPER if stem.endswith('_paper') else REPO / 'configs'
    return copy.deepcopy(
        _parse(str(folder / f'{stem}.py'), os.environ.get('HMDB51_SPLIT')))


def plain(value):
    """Config values as plain dicts, lists and scalars, without mmengine's
    ``_scope_`` bookkeeping (a replaced list carries none), tuples as lists."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


MISSING = object()


def differing_keys(a, b, prefix=''):
    """Dotted keys where the nested dicts ``a`` and ``b`` differ (a key
    present in one only counts). Lists are compared whole: a pipeline or a
    schedule is one value."""
    keys = set()
    for key in set(a) | set(b):
        path = f'{prefix}{key}'
        va, vb = a.get(key, MISSING), b.get(key, MISSING)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys |= differing_keys(va, vb, f'{path}.')
        elif va != vb:
            keys.add(path)
    return keys


def lookup(cfg, dotted):
    for key in dotted.split('.'):
        cfg = cfg[key]
    return cfg


def test_every_paper_config_is_listed():
    assert sorted(PAPER_CONFIGS) == sorted(p.stem for p in PAPER.glob('*.py'))


def test_differing_keys_finds_nested_changes_and_additions():
    a = dict(x=1, y=dict(z=[1, 2], w=3), v=dict(u=1))
    b = dict(x=1, y=dict(z=[1, 3], w=3, new=0), v=5)
    assert differing_keys(a, b) == {'y.z', 'y.new', 'v'}


@pytest.mark.parametrize('stem', sorted(PAPER_CONFIGS))
def test_paper_config_differs_from_its_parent_only_in_the_authors_fields(
        stem):
    parent_stem, values, changed, _, _ = PAPER_CONFIGS[stem]
    paper, parent = load(stem), load(parent_stem)
    assert paper.filename.endswith(f'configs/paper/{stem}.py')
    paper_dict, parent_dict = plain(paper.to_dict()), plain(parent.to_dict())
    assert differing_keys(paper_dict, parent_dict) == changed
    for key, value in values.items():
        assert lookup(paper_dict, key) == value, key


@pytest.mark.parametrize('stem', [s for s in PAPER_CONFIGS if 'sth' in s])
def test_something_test_is_one_clip_centre_crop(stem):
    """The validation pipeline of the parent: one clip of T frames, no
    twice-sampling, one 224 centre crop."""
    paper, parent = load(stem), load(PAPER_CONFIGS[stem][0])
    pipeline = plain(paper.test_dataloader.dataset.pipeline)
    assert pipeline == plain(paper.test_pipeline)
    assert pipeline == plain(parent.val_dataloader.dataset.pipeline)
    [sample] = [s for s in pipeline if s['type'] == 'SampleFrames']
    assert sample['num_clips'] == PAPER_CONFIGS[stem][3]
    assert sample['test_mode'] and not sample.get('twice_sample', False)
    crops = [s for s in pipeline if 'Crop' in s['type']]
    assert crops == [dict(type='CenterCrop', crop_size=224)]


@pytest.mark.parametrize(
    'stem', ['msnet_tsm_r50_k400_16f_paper', 'msnet_tsm_r50_hmdb51_ft_paper'])
def test_kinetics_test_is_ten_clips_three_crops(stem):
    """The parent's dense sampling (10 windows) with three 256 crops in
    place of ten 224 crops; every other step the parent's."""
    paper, parent = load(stem), load(PAPER_CONFIGS[stem][0])
    pipeline = plain(paper.test_dataloader.dataset.pipeline)
    parent_pipeline = plain(parent.test_dataloader.dataset.pipeline)
    assert pipeline == plain(paper.test_pipeline)
    assert [s['type'] for s in parent_pipeline].count('TenCrop') == 1
    assert pipeline == [
        dict(type='ThreeCrop', crop_size=256) if s['type'] == 'TenCrop' else s
        for s in parent_pipeline
    ]
    [sample] = [s for s in pipeline if s['type'] == 'DenseSampleFrames']
    assert sample['num_clips'] == 16 and sample['test_mode']
    # DenseSampleFrames' default: 10 windows, as the authors' test.
    assert sample.get('num_sample_positions', 10) == 10


def test_hmdb51_starts_from_the_paper_kinetics_checkpoint(monkeypatch):
    paper = load('msnet_tsm_r50_hmdb51_ft_paper')
    assert paper.load_from == ('checkpoints/'
                               'msnet_tsm_r50_k400_16f_paper.pth')
    assert paper.work_dir.endswith('msnet_tsm_r50_hmdb51_ft_paper_split1')
    monkeypatch.setenv('HMDB51_SPLIT', '3')
    split3 = load('msnet_tsm_r50_hmdb51_ft_paper')
    assert split3.work_dir.endswith('_paper_split3')
    assert split3.train_dataloader.dataset.ann_file.endswith(
        'hmdb51_train_split_3_videos.txt')


@pytest.mark.parametrize('stem', sorted(PAPER_CONFIGS))
def test_paper_config_builds_its_model(stem, one_thread):
    _, _, _, segments, classes = PAPER_CONFIGS[stem]
    cfg = load(stem)
    cfg.model.backbone.pretrained = None  # no download
    model = MODELS.build(cfg.model)
    assert type(model.backbone).__name__ == 'MSResNetTSM'
    assert model.backbone.depth == 50
    assert model.backbone.ms_layer2.num_segments == segments
    assert model.cls_head.num_classes == classes
    assert model.cls_head.num_segments == segments
    assert model.cls_head.fc_cls.out_features == classes
    assert model.cls_head.dropout.p == (0.8 if 'hmdb51' in stem else 0.5)


def shrunk_sizes(pipeline, prefix, divisor):
    """``--cfg-options`` that divide every spatial size of ``pipeline`` by
    ``divisor`` (R50 on tiny frames); every transform stays as it is."""
    sizes = dict(Resize='scale', MultiScaleCrop='input_size',
                 CenterCrop='crop_size', ThreeCrop='crop_size')
    options = []
    for index, step in enumerate(pipeline):
        arg = sizes.get(step['type'])
        if arg is not None:
            size = step[arg]
            size = (tuple(s if s < 0 else s // divisor for s in size)
                    if isinstance(size, (tuple, list)) else size // divisor)
            options.append(f'{prefix}.pipeline.{index}.{arg}='
                           f'{str(size).replace(" ", "")}')
    return options


@pytest.mark.slow
def test_sthv1_paper_recipe_trains_and_tests_a_step(tmp_path, monkeypatch,
                                                    load_tool, one_thread):
    """``python tools/train.py configs/paper/msnet_tsm_r50_sthv1_paper.py``
    on two generated rawframe clips of 16 frames (sizes / 14): one step
    with the authors' optimizer (Nesterov SGD, lr scaled from 0.01 at batch
    48 to batch 2), then the 1-clip centre-crop test."""
    monkeypatch.setattr(Config, 'pretty_text', property(lambda cfg: cfg.text))
    ann_file = generate_rawframe_dataset(str(tmp_path / 'data'), num_videos=2,
                                         seed=0, num_frames=16, size=64)
    cfg = load('msnet_tsm_r50_sthv1_paper')
    options = [
        'model.backbone.pretrained=None', 'train_cfg.max_epochs=1',
        'default_hooks.checkpoint.interval=-1',
        'default_hooks.checkpoint.save_last=False', 'log_level=WARNING'
    ]
    for split, batch in (('train', 2), ('test', 1)):
        prefix = f'{split}_dataloader.dataset'
        options += [
            f'{split}_dataloader.batch_size={batch}',
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False',
            f'{prefix}.ann_file={ann_file}',
            f'{prefix}.data_prefix.img={tmp_path / "data" / "rawframes"}',
        ] + shrunk_sizes(cfg[f'{split}_dataloader'].dataset.pipeline, prefix,
                         14)
    runners, frames_seen = [], []
    train = Runner.train

    def recorded_train(runner):
        runners.append(runner)
        runner.model.backbone.register_forward_pre_hook(
            lambda module, args: frames_seen.append(args[0].shape[0]))
        runner.reduce_before = (
            runner.model.backbone.ms_layer2.reduce[0].weight.clone())
        return train(runner)

    monkeypatch.setattr(Runner, 'train', recorded_train)
    load_tool('train').main([
        str(PAPER / 'msnet_tsm_r50_sthv1_paper.py'), '--no-validate',
        '--work-dir', str(tmp_path / 'work'), '--cfg-options', *options
    ])
    [runner] = runners
    assert [step.get('crop_size') for step in
            runner.cfg.test_dataloader.dataset.pipeline
            if step['type'] == 'CenterCrop'] == [224 // 14]
    assert runner.iter == 1
    assert frames_seen == [2 * 8]
    # auto_scale_lr: 0.01 x (2 clips / 48), MultiStepLR at epoch 0 (x1).
    groups = runner.optim_wrapper.optimizer.param_groups
    assert all(group['nesterov'] and group['momentum'] == 0.9
               for group in groups)
    base_lrs = {round(group['lr'] / (0.01 * 2 / 48), 6) for group in groups}
    assert base_lrs <= {1.0, 2.0, 5.0, 10.0}  # TSM's lr multipliers
    assert 1.0 in base_lrs
    assert runner.optim_wrapper.clip_grad_kwargs['max_norm'] == 200
    reduce_after = runner.model.backbone.ms_layer2.reduce[0].weight
    assert not torch.equal(runner.reduce_before, reduce_after)
    assert torch.isfinite(reduce_after).all()

    metrics = runner.test()
    assert frames_seen == [2 * 8, 1 * 8, 1 * 8]  # one clip, one crop each
    assert 0.0 <= metrics['acc/top1'] <= 1.0
