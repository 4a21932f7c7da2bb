"""Bad input gets a clear error: bad videos and rawframes, annotation files,
segment counts, checkpoints that do not fit, malicious checkpoints, NaN
losses. Each test asserts the message a user sees. (Round two, by family:
test_bad_annotations.py, test_bad_checkpoints.py, test_bad_configs.py,
test_cli_errors.py; interrupts and a full disk in test_crash_resume.py.)"""
import copy
import functools
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmaction.registry import MODELS
from torch.utils.data import DataLoader

from msnet_plugin.checks import check_segment_counts
from msnet_plugin.datasets import (CheckedRawframeDataset,
                                   CheckedVideoDataset, generate_motion_clip,
                                   generate_rawframe_dataset, write_video)
from msnet_plugin.errors import (AnnotationError, BadSampleError,
                                 CheckpointMismatchError, InvalidLossError,
                                 SegmentCountError)

from repo_paths import DEMO_CONFIG, REPO

NUM_SEGMENTS = 8


@functools.lru_cache(maxsize=1)
def demo_val_pipeline():
    return Config.fromfile(DEMO_CONFIG).val_pipeline


def video_pipeline(test_mode=False):
    """The demo's decord pipeline (8 segments), in train or test mode."""
    pipeline = copy.deepcopy(demo_val_pipeline())
    [sample_frames] = [t for t in pipeline if t['type'] == 'SampleFrames']
    sample_frames['test_mode'] = test_mode
    return pipeline


def write_video_list(folder, num_frames=(8, 8, 8, 8), labels=None):
    """Videos 0.mp4, 1.mp4... (32x32, one moving texture each) and their
    annotation list ``list.txt`` (``<name> <label>`` per line)."""
    folder.mkdir(parents=True, exist_ok=True)
    labels = labels or [i % 4 for i in range(len(num_frames))]
    rng = np.random.default_rng(0)
    for index, frames in enumerate(num_frames):
        write_video(str(folder / f'{index}.mp4'),
                    generate_motion_clip(rng, 'right', frames, 32, 4))
    ann_file = folder / 'list.txt'
    ann_file.write_text(''.join(f'{i}.mp4 {label}\n'
                                for i, label in enumerate(labels)))
    return ann_file


def damage(path, how):
    """Make a valid video corrupt, empty or truncated."""
    data = path.read_bytes()
    path.write_bytes(dict(corrupt=bytes(reversed(data)), empty=b'',
                          truncated=data[:len(data) // 2])[how])


def video_dataset(ann_file, **kwargs):
    return CheckedVideoDataset(
        ann_file=str(ann_file), pipeline=video_pipeline(),
        data_prefix=dict(video=str(ann_file.parent)), **kwargs)


# --- bad videos and rawframes -------------------------------------------------

@pytest.mark.parametrize('how', ['corrupt', 'empty', 'truncated'])
def test_bad_video_error_names_file_and_line(tmp_path, how):
    ann_file = write_video_list(tmp_path)
    damage(tmp_path / '2.mp4', how)
    dataset = video_dataset(ann_file)
    assert dataset[1]['inputs'].shape == (NUM_SEGMENTS, 3, 32, 32)
    with pytest.raises(BadSampleError) as error:
        dataset[2]
    assert str(error.value).startswith(
        f'cannot load {tmp_path}/2.mp4 (line 3 of {ann_file}): '
        'RuntimeError: Error reading')


def test_bad_video_error_crosses_dataloader_workers(tmp_path):
    ann_file = write_video_list(tmp_path)
    damage(tmp_path / '3.mp4', 'empty')
    loader = DataLoader(video_dataset(ann_file), batch_size=1, num_workers=1,
                        collate_fn=lambda batch: batch)
    with pytest.raises(BadSampleError,
                       match=re.escape(f'3.mp4 (line 4 of {ann_file})')):
        list(loader)


@pytest.mark.slow
def test_missing_rawframe_error_names_folder_and_line(tmp_path):
    ann_file = generate_rawframe_dataset(str(tmp_path), num_videos=3, seed=0,
                                         size=32, speed=4)
    frame = tmp_path / 'rawframes' / '00001' / '00004.jpg'
    frame.unlink()
    dataset = CheckedRawframeDataset(
        ann_file=ann_file, data_prefix=dict(img=str(tmp_path / 'rawframes')),
        filename_tmpl='{:05}.jpg',
        pipeline=[
            dict(type='SampleFrames', clip_len=1, frame_interval=1,
                 num_clips=NUM_SEGMENTS, test_mode=True),
            dict(type='RawFrameDecode'),
            dict(type='FormatShape', input_format='NCHW'),
            dict(type='PackActionInputs')
        ], test_mode=True)
    assert dataset[0]['inputs'].shape == (NUM_SEGMENTS, 3, 32, 32)
    with pytest.raises(BadSampleError) as error:
        dataset[1]
    message = str(error.value)
    assert message.startswith(f'cannot load {tmp_path}/rawframes/00001 '
                              f'(line 2 of {ann_file}): ')
    assert str(frame) in message


@pytest.mark.slow
def test_skip_switch_skips_counts_and_refuses_test_mode(tmp_path):
    ann_file = write_video_list(tmp_path)
    damage(tmp_path / '1.mp4', 'corrupt')
    dataset = video_dataset(ann_file, skip_bad_samples=True)
    # mmengine replaces a skipped sample by a random one, which may be the
    # corrupt clip again (each attempt counts); pin the replacement.
    dataset._rand_another = lambda: 0
    loader = DataLoader(dataset, batch_size=1, num_workers=1,
                        collate_fn=lambda batch: batch)
    samples = [batch[0] for batch in loader]  # counted in a worker process
    assert len(samples) == 4
    assert all(s['inputs'].shape == (NUM_SEGMENTS, 3, 32, 32)
               for s in samples)
    assert dataset.skipped_samples() == 1
    dataset.reset_skipped_samples()
    assert dataset.skipped_samples() == 0
    with pytest.raises(ValueError, match='skip_bad_samples=True is for '
                       'training only'):
        video_dataset(ann_file, skip_bad_samples=True, test_mode=True)


def test_skip_switch_stops_a_broken_pipeline(tmp_path):
    ann_file = write_video_list(tmp_path)
    for index in range(4):
        damage(tmp_path / f'{index}.mp4', 'empty')
    dataset = video_dataset(ann_file, skip_bad_samples=True,
                            max_skips_in_a_row=3)
    with pytest.raises(BadSampleError, match='3 samples in a row failed'):
        dataset[0]


@pytest.mark.parametrize('test_mode, frame_inds', [
    (False, [0, 0, 1, 1, 2, 2, 2, 0]),
    (True, [0, 0, 0, 1, 1, 2, 2, 2]),
])
def test_video_shorter_than_num_segments(tmp_path, test_mode, frame_inds):
    """MMAction2's SampleFrames spreads 8 segments over 3 frames: offsets
    round(i * 3 / 8) in training (index 3 wraps to 0), round((i + 0.5) * 3 /
    8 - 0.5) in testing. The clip keeps its 8 frames."""
    ann_file = write_video_list(tmp_path, num_frames=(3, ))
    dataset = CheckedVideoDataset(
        ann_file=str(ann_file), pipeline=video_pipeline(test_mode)[:3],
        data_prefix=dict(video=str(tmp_path)), test_mode=test_mode)
    results = dataset[0]
    assert results['total_frames'] == 3
    assert results['frame_inds'].tolist() == frame_inds
    assert len(results['imgs']) == NUM_SEGMENTS


# --- annotation files -------------------------------------------------------

def test_missing_annotation_file_fails_at_construction(tmp_path):
    with pytest.raises(AnnotationError) as error:
        video_dataset(tmp_path / 'nowhere.txt')
    assert str(error.value) == ('CheckedVideoDataset: annotation file not '
                                f'found: {tmp_path}/nowhere.txt')


def test_label_outside_num_classes_fails_at_construction(tmp_path):
    ann_file = write_video_list(tmp_path, labels=[0, 1, 4, 2])
    with pytest.raises(AnnotationError) as error:
        video_dataset(ann_file, num_classes=4)
    assert str(error.value) == (
        f'label 4 of {tmp_path}/2.mp4 (line 3 of {ann_file}) is outside '
        '0..3 (num_classes=4)')


def demo_cfg(tmp_path, **loader_changes):
    """The demo config on 4 tiny clips, batch 2, one epoch, no validation."""
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.logger.interval = 1
    cfg.log_level = 'INFO'
    loader = cfg.train_dataloader
    loader.update(batch_size=2, num_workers=0, persistent_workers=False)
    loader.dataset.update(data_root=str(tmp_path / 'data'), num_videos=4,
                          size=32, speed=4)
    for key, value in loader_changes.items():
        loader[key] = value
    return cfg


@pytest.mark.slow
def test_label_outside_head_classes_stops_before_training(tmp_path):
    """The dataset does not know num_classes: DatasetCheckHook compares the
    labels with the model's head before the first iteration."""
    ann_file = write_video_list(tmp_path / 'videos', labels=[0, 1, 2, 9])
    cfg = demo_cfg(tmp_path, dataset=dict(
        type='CheckedVideoDataset', ann_file=str(ann_file),
        data_prefix=dict(video=str(ann_file.parent)),
        pipeline=video_pipeline()))
    runner = Runner.from_cfg(cfg)
    with pytest.raises(AnnotationError) as error:
        runner.train()
    assert str(error.value) == (
        f'label 9 of {ann_file.parent}/3.mp4 (line 4 of {ann_file}) is '
        'outside 0..3 (num_classes=4)')
    assert runner.iter == 0


# --- segment counts -------------------------------------------------------------

@pytest.mark.parametrize('key, value, message', [
    ('cls_head.num_segments', 16, 'model.backbone.num_segments=8, '
     'model.cls_head.num_segments=16'),
    ('backbone.ms_cfg.num_segments', 4, 'model.backbone.ms_cfg.num_segments'
     '=4, but model.backbone.num_segments=8 gives 8 at the MS stage'),
])
def test_segment_counts_that_disagree_are_refused(key, value, message):
    cfg = Config.fromfile(DEMO_CONFIG)
    assert check_segment_counts(cfg.model) == {
        'model.backbone.num_segments': 8,
        'model.cls_head.num_segments': 8
    }
    cfg.merge_from_dict({f'model.{key}': value})
    with pytest.raises(SegmentCountError, match=re.escape(message)):
        check_segment_counts(cfg.model)


def test_segment_count_default_of_the_head_is_compared():
    """TSMHead's num_segments defaults to 8; a backbone of 16 disagrees."""
    model = dict(backbone=dict(type='MSResNetTSM', depth=18,
                               num_segments=16),
                 cls_head=dict(type='TSMHead', num_classes=4,
                               in_channels=512))
    with pytest.raises(SegmentCountError,
                       match='model.cls_head.num_segments=8'):
        check_segment_counts(model)


def test_train_tool_checks_segment_counts_before_building(tmp_path,
                                                          tool_error,
                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = tool_error('train', [
        DEMO_CONFIG, '--cfg-options', 'model.cls_head.num_segments=4'])
    assert code == 2
    assert err.startswith(
        'error: segment counts disagree: model.backbone.num_segments=8, '
        'model.cls_head.num_segments=4.')
    assert list(tmp_path.iterdir()) == []  # stopped before the datasets


# --- checkpoints -----------------------------------------------------------------

@pytest.fixture
def other_checkpoints(tmp_path, eight_class_demo_checkpoint):
    """Checkpoints of the demo model with 8 classes, and of TSM-R18 without
    MotionSqueeze, saved as mmengine's Runner saves them."""
    model_cfg = copy.deepcopy(Config.fromfile(DEMO_CONFIG).model)
    model_cfg.backbone.type = 'ResNetTSM'
    del model_cfg.backbone.ms_stages, model_cfg.backbone.ms_cfg
    no_ms = tmp_path / 'no_MS.pth'
    torch.save(dict(meta=dict(epoch=1, iter=1),
                    state_dict=MODELS.build(model_cfg).state_dict()), no_ms)
    return {'8 classes': eight_class_demo_checkpoint, 'no MS': no_ms}


@pytest.mark.slow
def test_checkpoint_of_other_class_count_lists_shapes(tmp_path,
                                                      other_checkpoints):
    cfg = demo_cfg(tmp_path)
    cfg.test_dataloader.dataset.update(data_root=str(tmp_path / 'data'),
                                       num_videos=4, size=32, speed=4)
    cfg.load_from = str(other_checkpoints['8 classes'])
    with pytest.raises(CheckpointMismatchError) as error:
        Runner.from_cfg(cfg).test()
    assert str(error.value).startswith(
        f'checkpoint {other_checkpoints["8 classes"]} does not fit the model '
        'Recognizer2D:\n'
        '  2 different shapes:\n'
        '    cls_head.fc_cls.bias: checkpoint (8,) vs model (4,)\n'
        '    cls_head.fc_cls.weight: checkpoint (8, 512) vs model (4, 512)\n'
        'It was probably saved for another architecture')


@pytest.mark.slow
def test_checkpoint_of_other_architecture_lists_keys(tmp_path,
                                                     other_checkpoints):
    cfg = demo_cfg(tmp_path)
    cfg.resume, cfg.load_from = True, str(other_checkpoints['no MS'])
    with pytest.raises(CheckpointMismatchError) as error:
        Runner.from_cfg(cfg).train()
    message = str(error.value)
    assert re.search(r'\n  \d+ missing from the checkpoint:\n'
                     r'    backbone\.ms_layer2\.', message), message
    assert '    ... and ' in message
    assert 'in the checkpoint, not in the model' not in message


def test_fine_tuning_may_ignore_the_head(tmp_path, other_checkpoints):
    cfg = demo_cfg(tmp_path)
    cfg.custom_hooks = [dict(type='CheckpointMatchHook',
                             ignore_prefixes=['cls_head.'])]
    runner = Runner.from_cfg(cfg)
    runner.load_checkpoint(str(other_checkpoints['8 classes']))
    expected = torch.load(other_checkpoints['8 classes'])['state_dict']
    assert torch.equal(runner.model.backbone.conv1.conv.weight,
                       expected['backbone.conv1.conv.weight'])


class WritesFileOnUnpickle:
    """Pickles as ``open(path, 'w')``: loading it would create ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


@pytest.fixture
def malicious_checkpoint(tmp_path):
    side_effect = tmp_path / 'written_by_the_checkpoint'
    path = tmp_path / 'malicious.pth'
    torch.save(dict(meta=dict(epoch=1, iter=1),
                    state_dict=WritesFileOnUnpickle(side_effect)), path)
    return path, side_effect


UNSAFE = ('holds Python objects that safe loading refuses to create '
          '(Unsupported global: GLOBAL io.open was not an allowed global')


@pytest.mark.slow
def test_test_tool_refuses_malicious_checkpoint(tmp_path,
                                               malicious_checkpoint):
    """tools/test.py in its own interpreter, end to end."""
    path, side_effect = malicious_checkpoint
    options = [
        f'test_dataloader.dataset.{key}={value}'
        for key, value in (('data_root', tmp_path / 'data'), ('num_videos', 4),
                           ('size', 32), ('speed', 4))
    ]
    result = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'test.py'), str(DEMO_CONFIG),
         str(path), '--work-dir', str(tmp_path / 'work'),
         '--cfg-options', *options],
        capture_output=True, text=True, cwd=tmp_path, timeout=600,
        env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith(
        f'error: checkpoint {path} {UNSAFE}'), result.stderr[-3000:]
    assert not side_effect.exists()


def test_train_tool_resume_refuses_malicious_checkpoint(
        tmp_path, malicious_checkpoint, tool_error, monkeypatch):
    path, side_effect = malicious_checkpoint
    monkeypatch.chdir(tmp_path)
    options = [
        f'train_dataloader.dataset.{key}={value}'
        for key, value in (('data_root', tmp_path / 'data'), ('num_videos', 4),
                           ('size', 32), ('speed', 4))
    ]
    code, err = tool_error('train', [
        DEMO_CONFIG, '--resume', path, '--no-validate', '--work-dir',
        tmp_path / 'work', '--cfg-options', *options])
    assert code == 2
    assert err.startswith(f'error: checkpoint to resume from {path} {UNSAFE}')
    assert not side_effect.exists()


def test_load_from_refuses_malicious_checkpoint(tmp_path,
                                                malicious_checkpoint):
    path, side_effect = malicious_checkpoint
    runner = Runner.from_cfg(demo_cfg(tmp_path))
    with pytest.raises(pickle.UnpicklingError):
        runner.load_checkpoint(str(path))
    assert not side_effect.exists()


# --- NaN loss, skipped-sample report ------------------------------------------

class PoisonWeightsAtIteration(Hook):
    """Sets the first conv's weights to NaN before iteration ``iteration``
    (0-based), so that its loss is NaN."""

    def __init__(self, iteration):
        self.iteration = iteration

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.iter == self.iteration:
            with torch.no_grad():
                runner.model.backbone.conv1.conv.weight.fill_(float('nan'))


@pytest.mark.slow
def test_nan_loss_stops_naming_iteration_and_keeps_checkpoint(tmp_path):
    """Epoch 1 (2 iterations) skips one corrupt video and reports it; the
    NaN loss of iteration 3 (epoch 2) stops training; epoch_1.pth stays."""
    cfg = demo_cfg(tmp_path)
    cfg.train_cfg.max_epochs = 2
    cfg.train_dataloader.dataset.skip_bad_samples = True
    Runner.from_cfg(copy.deepcopy(cfg)).train_dataloader  # generate videos
    damage(tmp_path / 'data' / 'videos' / '00002.mp4', 'corrupt')
    runner = Runner.from_cfg(cfg)
    runner.register_hook(PoisonWeightsAtIteration(2))
    with pytest.raises(InvalidLossError) as error:
        runner.train()
    assert str(error.value) == (
        'loss is nan at iteration 3 (epoch 2, batch 1); training stopped. '
        f'The last checkpoint, {tmp_path}/work/epoch_1.pth, was saved before '
        'it. Lower the learning rate or check the data, then resume from '
        'that checkpoint.')
    assert sorted(p.name for p in (tmp_path / 'work').glob('*.pth')) == [
        'epoch_1.pth'
    ]
    checkpoint = torch.load(tmp_path / 'work' / 'epoch_1.pth')
    assert all(torch.isfinite(v).all()
               for v in checkpoint['state_dict'].values()
               if v.is_floating_point())
    log = Path(runner.log_dir, f'{runner.timestamp}.log').read_text()
    skipped = re.findall(r'skipped \(skip_bad_samples=True\): cannot load '
                         r'\S+/00002\.mp4 \(line 3 of \S+annotations\.txt\)',
                         log)
    assert len(skipped) >= 1
    assert (f'Epoch 1: skipped {len(skipped)} bad training samples '
            '(skip_bad_samples=True)') in log
