"""Configs a user can get wrong: a file or folder that does not exist
(annotation file, data folder, pretrained weights, load_from), a type that
is not registered, a work directory that cannot be written, and generated
demo data at sizes or speeds the decoder or the model cannot handle. The
tools stop before building anything, in one line naming the key, the config
line where it is written there, and the fix."""
import os

import pytest
import torch
from mmaction.registry import HOOKS
from mmengine.config import Config

from msnet_plugin.checks import check_config_paths, check_writable_folder
from msnet_plugin.cli import EXIT_USER_ERROR, registry_message
from msnet_plugin.datasets import (SyntheticMotionDataset,
                                   generate_rawframe_dataset)
from msnet_plugin.datasets.synthetic_motion import decoded_frame_shape
from msnet_plugin.errors import ConfigError

from repo_paths import DEMO_CONFIG, HMDB51_CONFIG, STHV1_CONFIG

def line_of(config, text):
    """The number of the first line of ``config`` that holds ``text``."""
    lines = open(config).read().splitlines()
    return next(n for n, line in enumerate(lines, 1) if text in line)


def fix(key):
    return ('Fix the path in the config, or set it with --cfg-options '
            f'{key}=PATH')


@pytest.fixture
def sthv1_data(tmp_path):
    """Options pointing sthv1's training set at 2 generated clips."""
    ann_file = generate_rawframe_dataset(str(tmp_path / 'sthv1'), 2, 0,
                                         size=32, speed=4)
    return [f'train_dataloader.dataset.ann_file={ann_file}',
            'train_dataloader.dataset.data_prefix.img='
            f'{tmp_path}/sthv1/rawframes']


def test_missing_annotation_file_and_data_folder(tmp_path, tool_error,
                                                 sthv1_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = ['--work-dir', tmp_path / 'work', '--no-validate']
    key = 'train_dataloader.dataset.ann_file'
    assert tool_error('train', [STHV1_CONFIG, *work]) == (EXIT_USER_ERROR, (
        f"error: {key} = 'data/sthv1/sthv1_train_list_rawframes.txt': "
        f'annotation file not found (line '
        f"{line_of(STHV1_CONFIG, 'ann_file_train =')} of {STHV1_CONFIG}). "
        f'{fix(key)}\n'))
    key = 'train_dataloader.dataset.data_prefix.img'
    assert tool_error('train', [STHV1_CONFIG, *work, '--cfg-options',
                                sthv1_data[0]]) == (EXIT_USER_ERROR, (
        f"error: {key} = 'data/sthv1/rawframes': data folder not found "
        f"(line {line_of(STHV1_CONFIG, 'data_root =')} of {STHV1_CONFIG}). "
        f'{fix(key)}\n'))
    # Validation data are checked when validation runs.
    key = 'val_dataloader.dataset.ann_file'
    code, err = tool_error('train', [STHV1_CONFIG, '--work-dir',
                                     tmp_path / 'work',
                                     '--cfg-options', *sthv1_data])
    assert err.startswith(f"error: {key} = 'data/sthv1/sthv1_val_list_"
                          'rawframes.txt\': annotation file not found')
    assert not (tmp_path / 'work').exists()  # stopped before building


def test_test_tool_checks_the_test_data(tmp_path, tool_error, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / 'weights.pth'
    torch.save({'w': torch.zeros(1)}, weights)
    key = 'test_dataloader.dataset.ann_file'
    assert tool_error('test', [STHV1_CONFIG, weights]) == (EXIT_USER_ERROR, (
        f"error: {key} = 'data/sthv1/sthv1_val_list_rawframes.txt': "
        f'annotation file not found (line '
        f"{line_of(STHV1_CONFIG, 'ann_file_val =')} of {STHV1_CONFIG}). "
        f'{fix(key)}\n'))


def test_data_root_is_joined_as_mmengine_joins_it(tmp_path):
    """``ann_file`` and ``data_prefix`` relative to ``data_root``, as
    mmengine's BaseDataset reads them; a missing data_root is named
    first."""
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='CheckedVideoDataset', data_root=str(tmp_path),
        ann_file='train.txt', data_prefix=dict(video='videos')))))
    with pytest.raises(ConfigError) as error:
        check_config_paths(cfg, ['train'])
    assert str(error.value) == (
        "train_dataloader.dataset.ann_file = 'train.txt' (joined with "
        f'data_root: {tmp_path}/train.txt): annotation file not found. '
        f'{fix("train_dataloader.dataset.ann_file")}')
    (tmp_path / 'train.txt').write_text('0.mp4 1\n')
    with pytest.raises(ConfigError, match=r"data_prefix.video = 'videos' "
                       rf'\(joined with data_root: {tmp_path}/videos\): '
                       'data folder not found'):
        check_config_paths(cfg, ['train'])
    (tmp_path / 'videos').mkdir()
    check_config_paths(cfg, ['train'])
    cfg.train_dataloader.dataset.data_root = str(tmp_path / 'nowhere')
    with pytest.raises(ConfigError, match="data_root = '.*/nowhere': data "
                       'folder not found'):
        check_config_paths(cfg, ['train'])


def test_missing_weights_and_load_from(tmp_path, tool_error, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work = ['--work-dir', tmp_path / 'work']
    key = 'model.backbone.pretrained'
    assert tool_error('train', [DEMO_CONFIG, *work, '--cfg-options',
                                f'{key}=r18.pth']) == (EXIT_USER_ERROR, (
        f"error: {key} = 'r18.pth': weights file not found. {fix(key)}\n"))
    assert tool_error('train', [DEMO_CONFIG, *work, '--cfg-options',
                                'load_from=epoch_9.pth']) == (
        EXIT_USER_ERROR, "error: load_from = 'epoch_9.pth': checkpoint not "
        f'found. {fix("load_from")}\n')
    assert tool_error('train', [DEMO_CONFIG, *work, '--resume',
                                'epoch_9.pth']) == (
        EXIT_USER_ERROR, 'error: checkpoint to resume from not found: '
        'epoch_9.pth\n')
    # Weights in the authors' layout point to the converter.
    authors = tmp_path / 'ms_r50.pth.tar'
    torch.save(dict(arch='resnet50', best_prec1=50.0, state_dict={
        'module.base_model.conv1.weight': torch.zeros(1)}), authors)
    code, err = tool_error('train', [DEMO_CONFIG, *work, '--cfg-options',
                                     f'{key}={authors}'])
    assert err.startswith(f'error: {key} weights {authors} is in the '
                          "MotionSqueeze authors' layout")
    assert (f'python tools/convert_authors_checkpoint.py {authors} '
            f'{tmp_path}/ms_r50_mmaction.pth --config {DEMO_CONFIG}' in err)


def test_load_from_of_a_config_is_named_with_its_line():
    cfg = Config.fromfile(HMDB51_CONFIG)
    with pytest.raises(ConfigError) as error:
        check_config_paths(cfg, [], weights=True)
    assert str(error.value) == (
        "load_from = 'checkpoints/msnet_tsm_r50_k400_16f.pth': checkpoint "
        f"not found (line {line_of(HMDB51_CONFIG, 'load_from =')} of "
        f'{HMDB51_CONFIG}). {fix("load_from")}')


def test_unregistered_type(tmp_path, tool_error, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = tmp_path / 'typo.py'
    config.write_text(f'_base_ = [{str(DEMO_CONFIG)!r}]\n'
                      "model = dict(backbone=dict(type='MSResNetTMS'))\n")
    assert tool_error('train', [config, '--work-dir', tmp_path / 'work']) == (
        EXIT_USER_ERROR, "error: type 'MSResNetTMS' is not registered in "
        f"mmaction's model registry (line 2 of {config}); did you mean "
        'MSResNetTSM, ResNetTSM or ResNet?\n')


def test_unregistered_type_set_on_the_command_line():
    """The KeyError mmengine raises, as the tools print it."""
    with pytest.raises(KeyError) as error:
        HOOKS.build(dict(type='CheckpointHok'))
    assert registry_message(error.value, str(DEMO_CONFIG)) == (
        "type 'CheckpointHok' is not registered in mmaction's hook registry "
        f'(named in {DEMO_CONFIG}, a base config or --cfg-options); did you '
        'mean CheckpointHook or CheckpointMatchHook?')
    assert registry_message(KeyError('state_dict')) is None


def test_work_dir_that_cannot_be_written(tmp_path, tool_error, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocker = tmp_path / 'results'
    blocker.write_text('a file where a folder should be')
    assert tool_error('train', [DEMO_CONFIG, '--work-dir', blocker / 'run']
                      ) == (EXIT_USER_ERROR, (
        f'error: work_dir {blocker}/run cannot be written (Not a directory)'
        '; choose another with --work-dir DIR\n'))
    assert tool_error('train', [DEMO_CONFIG, '--work-dir', blocker]) == (
        EXIT_USER_ERROR, f'error: work_dir {blocker} is a file, not a '
        'folder; choose another with --work-dir DIR\n')


@pytest.mark.skipif(os.geteuid() == 0, reason='root may write anywhere')
def test_read_only_work_dir(tmp_path):
    folder = tmp_path / 'read_only'
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=r'cannot be written '
                           r'\(Permission denied'):
            check_writable_folder(str(folder))
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize('arguments, message', [
    (dict(size=16), 'size=16 is below 32 px: the backbone\'s last stage has '
     'stride 32, so smaller frames give it less than one cell of image'),
    (dict(size=33), 'size=33 is odd: the mp4 encoder crops odd sizes; use an '
     'even size'),
    (dict(size=48), 'size=48: decord cannot decode mp4 videos of 48x48 px (it '
     'returns frames of shape (48, 48, 4)); use another even size, e.g. 50'),
    (dict(size=64, speed=32), 'speed=32 is outside 1..31 pixels per frame '
     'for size=64: a texture that wraps around every 64 px moved by s px '
     'looks moved by s - 64 px, so the speed must be positive and below '
     'size / 2 for right and left to differ'),
    (dict(size=64, speed=64), 'speed=64 is outside 1..31 pixels per frame'),
    (dict(size=64, speed=0), 'speed=0 is outside 1..31 pixels per frame'),
    (dict(num_classes=5, num_frames=0), 'num_classes=5 is not one of (4, 8) '
     '(the motion directions); num_videos=2 and num_frames=0 must both be at '
     'least 1'),
])
def test_generated_data_beyond_the_limits_is_refused_when_built(
        tmp_path, arguments, message):
    with pytest.raises(ConfigError) as error:
        SyntheticMotionDataset(str(tmp_path / 'data'), [], num_videos=2,
                               **arguments)
    assert str(error.value).startswith(
        f"SyntheticMotionDataset(data_root='{tmp_path}/data'): {message}")
    assert not (tmp_path / 'data' / 'videos').exists()


def test_decodable_sizes_are_found_by_trying():
    """decord 0.6.0 returns padded rows for a few sizes; the limit is
    whatever the installed decoder does."""
    assert decoded_frame_shape(64) == (64, 64, 3)
    assert decoded_frame_shape(50) == (50, 50, 3)
    assert decoded_frame_shape(16) != (16, 16, 3)


def test_train_tool_names_the_generated_data_limit(tmp_path, tool_error,
                                                   small_demo_options,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = tool_error('train', [
        DEMO_CONFIG, '--work-dir', tmp_path / 'work', '--cfg-options',
        *small_demo_options(tmp_path / 'data'),
        'train_dataloader.dataset.speed=16'])
    assert (code, err) == (EXIT_USER_ERROR, (
        f"error: SyntheticMotionDataset(data_root='{tmp_path}/data/train'): "
        'speed=16 is outside 1..15 pixels per frame for size=32: a texture '
        'that wraps around every 32 px moved by s px looks moved by s - 32 '
        'px, so the speed must be positive and below size / 2 for right and '
        'left to differ\n'))
