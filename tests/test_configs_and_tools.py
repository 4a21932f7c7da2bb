"""Configs build; tools/train.py and tools/test.py run end to end on CPU."""
import os
import pickle
import re
import subprocess
import sys

import pytest
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.hub import get_config

from repo_paths import DEMO_CONFIG, REPO, STHV1_CONFIG

CONFIGS = sorted((REPO / 'configs').glob('*.py'))


def accuracies(log, mode):
    """The acc/top1 values an mmengine log printed for ``mode`` (val, test)."""
    return [
        float(value) for value in re.findall(
            rf'Epoch\({mode}\).*?acc/top1: ([0-9.]+)', log)
    ]


def output(result):
    """What a finished tool printed, stdout and stderr."""
    return result.stdout + result.stderr


@pytest.mark.parametrize('config', CONFIGS, ids=[c.stem for c in CONFIGS])
def test_every_config_loads_and_builds(config):
    cfg = Config.fromfile(config)
    assert cfg.custom_imports == dict(imports=['msnet_plugin'],
                                      allow_failed_imports=False)
    cfg.model.backbone.pretrained = None
    model = MODELS.build(cfg.model)
    assert any(name.startswith(('backbone.ms_layer', 'neck.motion_squeeze'))
               for name, _ in model.named_parameters())


def test_sthv1_config_is_mmaction_tsm_with_ms_and_sthv1_data(without_scope):
    cfg = Config.fromfile(STHV1_CONFIG)
    base = get_config(
        'mmaction::recognition/tsm/'
        'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb.py')
    backbone = without_scope(cfg.model.backbone)
    assert backbone.pop('type') == 'MSResNetTSM'
    assert backbone.pop('ms_stages') == [1] and backbone.pop('ms_cfg') == {}
    base_backbone = without_scope(base.model.backbone)
    assert base_backbone.pop('type') == 'ResNetTSM'
    assert backbone == base_backbone
    # The one change to the hooks: checkpoints are written atomically.
    hooks = without_scope(cfg.default_hooks)
    assert hooks['checkpoint'].pop('backend_args') == dict(
        backend='atomic_local')
    assert hooks == without_scope(base.default_hooks)
    for key in ('optim_wrapper', 'param_scheduler', 'train_cfg',
                'auto_scale_lr'):
        assert without_scope(cfg[key]) == without_scope(base[key]), key
    assert without_scope(cfg.model.cls_head) == without_scope(
        base.model.cls_head)
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == 'CheckedRawframeDataset'
    assert dict(dataset.data_prefix) == dict(img='data/sthv1/rawframes')
    flip = [t for t in dataset.pipeline if t.type == 'Flip'][0]
    assert flip.flip_label_map == {2: 4, 4: 2, 30: 41, 41: 30, 52: 66, 66: 52}


@pytest.mark.slow
def test_demo_trains_resumes_and_tests(tmp_path, run_tool, small_demo_options):
    options = small_demo_options(tmp_path / 'data')
    work_dir = tmp_path / 'work'
    first = output(run_tool('train.py', DEMO_CONFIG, '--work-dir', work_dir,
                            '--cfg-options', *options, cwd=tmp_path))
    assert len(accuracies(first, 'val')) == 1
    assert (work_dir / 'epoch_1.pth').is_file()

    resumed = output(run_tool('train.py', DEMO_CONFIG, '--work-dir', work_dir,
                              '--resume', '--cfg-options', *options,
                              'train_cfg.max_epochs=2', cwd=tmp_path))
    assert 'resumed' in resumed.lower() and 'epoch_1.pth' in resumed
    assert 'Epoch(train) [1]' not in resumed
    assert re.search(r'Epoch\(train\) \[2\]', resumed)
    assert (work_dir / 'epoch_2.pth').is_file()

    dump = tmp_path / 'predictions.pkl'
    tested = output(run_tool('test.py', DEMO_CONFIG, work_dir / 'epoch_2.pth',
                             '--work-dir', work_dir, '--dump', dump,
                             '--cfg-options', *options, cwd=tmp_path))
    assert len(accuracies(tested, 'test')) == 1
    with open(dump, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 8
    assert all(p['pred_score'].shape == (4, ) for p in predictions)


@pytest.mark.slow
def test_demo_as_in_readme_learns_motion(tmp_path, run_tool):
    """The README's demo command, unchanged: top-1 well above chance (0.25)."""
    log = output(run_tool('train.py', DEMO_CONFIG, '--work-dir',
                          tmp_path / 'work', cwd=tmp_path))
    top1 = accuracies(log, 'val')
    assert len(top1) == 4
    assert top1[-1] >= 0.75, top1
    tested = output(run_tool('test.py', DEMO_CONFIG,
                             tmp_path / 'work' / 'epoch_4.pth', cwd=tmp_path))
    assert accuracies(tested, 'test')[0] >= 0.75


@pytest.mark.slow
def test_test_tool_names_a_missing_checkpoint_in_one_line(tmp_path):
    """In a fresh interpreter, as a user runs it: one line on stderr, no
    traceback, exit status 2 (msnet_plugin/cli.py)."""
    result = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'test.py'), str(DEMO_CONFIG),
         str(tmp_path / 'missing.pth')], capture_output=True, text=True,
        cwd=tmp_path, env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f'error: checkpoint not found: {tmp_path}/missing.pth')
