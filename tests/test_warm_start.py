"""Warm starts: MMAction2's TSM-R50 checkpoint into MSNet, and a Kinetics
MSNet checkpoint into the HMDB51 fine-tuning config, through the Runner's
``load_from``; the CheckpointMatchHook log says what loaded."""
import re
from pathlib import Path

import pytest
import torch
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.runner import Runner

from msnet_plugin.checkpoints import compare_checkpoint_keys

from repo_paths import HMDB51_CONFIG, REPO, STHV2_CONFIG

pytestmark = pytest.mark.usefixtures('one_thread')
TSM_ZOO_CONFIG = ('mmaction::recognition/tsm/'
                  'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb.py')


def save_random_checkpoint(model_cfg, path):
    """Build ``model_cfg`` (no pretrained weights), fill every float tensor
    with seeded random values, save ``{'state_dict': ...}``; return it."""
    model_cfg.backbone.pretrained = None
    model = MODELS.build(model_cfg)
    generator = torch.Generator().manual_seed(0)
    state = model.state_dict()
    for value in state.values():
        if value.is_floating_point():
            value.copy_(torch.randn(value.shape, generator=generator))
    torch.save({'state_dict': state, 'meta': {}}, path)
    return state


def load_with_runner(config, checkpoint, work_dir, monkeypatch):
    """Runner for ``config`` with ``load_from=checkpoint``; returns the
    model state before and after ``load_or_resume`` and the log text."""
    monkeypatch.setattr(Config, 'pretty_text', property(lambda cfg: cfg.text))
    cfg = Config.fromfile(config)
    cfg.model.backbone.pretrained = None
    cfg.update(work_dir=str(work_dir), load_from=str(checkpoint),
               launcher='none')
    runner = Runner.from_cfg(cfg)
    before = {k: v.clone() for k, v in runner.model.state_dict().items()}
    runner.load_or_resume()
    after = runner.model.state_dict()
    log_file = runner.logger.handlers[-1].baseFilename
    return before, after, Path(log_file).read_text()


def report_line(log, kind):
    """The keys the report hook listed for ``kind`` (new, unused, ...)."""
    match = re.search(rf'{kind} keys \([^)]*\) (none|\d+: (.*))$', log,
                      re.M)
    assert match, log[-3000:]
    return [] if match.group(1) == 'none' else match.group(2).split(', ')


def test_compare_checkpoint_keys():
    model = dict(a=torch.zeros(2), b=torch.zeros(3), c=torch.zeros(1))
    checkpoint = {'module.a': torch.ones(2), 'b': torch.ones(4),
                  'd': torch.ones(1)}
    assert compare_checkpoint_keys(model, checkpoint) == dict(
        loaded=['a'], new=['c'], unused=['d'],
        shape_mismatch={'b': ((4, ), (3, ))})


@pytest.mark.slow
def test_tsm_zoo_checkpoint_warm_starts_msnet(tmp_path, monkeypatch):
    """All TSM-R50 backbone and head weights load; MS keeps its init; the
    log names exactly MS's tensors as new and nothing as unused."""
    tsm_state = save_random_checkpoint(
        get_config(TSM_ZOO_CONFIG).model, tmp_path / 'tsm.pth')
    before, after, log = load_with_runner(
        STHV2_CONFIG, tmp_path / 'tsm.pth',
        tmp_path / 'work', monkeypatch)

    ms_keys = sorted(k for k in after if k.startswith('backbone.ms_layer2.'))
    assert ms_keys and sorted(after.keys() - tsm_state.keys()) == ms_keys
    for key, value in after.items():
        expected = before[key] if key in ms_keys else tsm_state[key]
        assert torch.equal(value, expected), key

    assert report_line(log, 'new') == ms_keys
    assert report_line(log, 'unused') == []
    assert report_line(log, 'shape-mismatched') == []
    assert (f'checkpoint keys: {len(tsm_state)} of the model\'s '
            f'{len(after)} tensors loaded') in log


@pytest.mark.slow
def test_kinetics_msnet_checkpoint_starts_hmdb51(tmp_path, monkeypatch):
    """Everything but the 400-class fc loads into the 51-class model."""
    k400_state = save_random_checkpoint(
        Config.fromfile(REPO / 'configs' /
                        'msnet_tsm_r50_k400_16f.py').model,
        tmp_path / 'k400.pth')
    before, after, log = load_with_runner(
        HMDB51_CONFIG,
        tmp_path / 'k400.pth', tmp_path / 'work', monkeypatch)
    fc = ['cls_head.fc_cls.bias', 'cls_head.fc_cls.weight']
    assert after['cls_head.fc_cls.weight'].shape == (51, 2048)
    for key, value in after.items():
        expected = before[key] if key in fc else k400_state[key]
        assert torch.equal(value, expected), key
    assert report_line(log, 'shape-mismatched') == fc
    assert report_line(log, 'new') == []
    assert report_line(log, 'unused') == []


@pytest.mark.parametrize('split', ['1', '2', '3'])
def test_hmdb51_split_from_one_variable(split, monkeypatch):
    monkeypatch.setenv('HMDB51_SPLIT', split)
    cfg = Config.fromfile(HMDB51_CONFIG)
    assert cfg.split == int(split)
    assert cfg.train_dataloader.dataset.ann_file == (
        f'data/hmdb51/hmdb51_train_split_{split}_videos.txt')
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        assert loader.dataset.ann_file == (
            f'data/hmdb51/hmdb51_val_split_{split}_videos.txt')
    assert cfg.work_dir.endswith(f'msnet_tsm_r50_hmdb51_ft_split{split}')


def test_hmdb51_default_split_and_bad_split(monkeypatch):
    monkeypatch.delenv('HMDB51_SPLIT', raising=False)
    cfg = Config.fromfile(HMDB51_CONFIG)
    assert cfg.split == 1
    for bad in ('4', 'two'):
        monkeypatch.setenv('HMDB51_SPLIT', bad)
        with pytest.raises(ValueError,
                           match=f"HMDB51_SPLIT must be 1, 2 or 3 .*'{bad}'"):
            Config.fromfile(HMDB51_CONFIG)
