"""A pipeline whose frame sampling does not give the model whole clips
(msnet_plugin/checks.py): SampleFrames' clip_len x num_clips must
be num_segments in training, a multiple of it in testing. Refused before
anything is built, naming the step; every config of the repository
passes."""

import re

import pytest
from mmengine.config import Config

from msnet_plugin.checks import check_frames_per_clip, check_segment_counts
from msnet_plugin.cli import EXIT_USER_ERROR

from repo_paths import DEMO_CONFIG, REPO


@pytest.mark.parametrize('config', sorted((REPO / 'configs').glob('*.py')),
                         ids=lambda path: path.stem)
def test_every_config_samples_whole_clips(config):
    cfg = Config.fromfile(config)
    if 'model' not in cfg:
        pytest.skip('not a model config')
    segments = check_segment_counts(cfg.model).get(
        'model.backbone.num_segments')
    check_frames_per_clip(cfg, segments, ['train', 'val', 'test'])


def test_training_clip_of_4_frames_for_8_segments(tmp_path, tool_error,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    key = 'train_dataloader.dataset.pipeline.1'
    assert tool_error('train', [
        DEMO_CONFIG, '--work-dir', tmp_path / 'work', '--cfg-options',
        f'{key}.num_clips=4']) == (EXIT_USER_ERROR, (
            f'error: {key} (SampleFrames) gives 4 frames per sample '
            '(clip_len=1 x num_clips=4), but model.backbone.num_segments is '
            '8: the model regroups the frames into clips of 8, so it needs '
            'exactly 8; set num_clips (or num_segments) so that they '
            'agree\n'))
    assert not (tmp_path / 'work').exists()


def test_test_views_must_be_whole_clips():
    cfg = Config(dict(test_dataloader=dict(dataset=dict(pipeline=[
        dict(type='SampleFrames', clip_len=1, num_clips=8, test_mode=True,
             twice_sample=True)]))))
    check_frames_per_clip(cfg, 8, ['test'])  # 2 views of 8
    cfg.test_dataloader.dataset.pipeline[0].num_clips = 6
    with pytest.raises(ValueError, match=r'gives 12 frames per sample '
                       r'\(clip_len=1 x num_clips=6 x 2 \(twice_sample\)\)'
                       r'.* needs a multiple of 8 \(each view is one clip\)'):
        check_frames_per_clip(cfg, 8, ['test'])


def test_a_wrapped_dataset_is_named_by_its_own_key():
    """RepeatDataset's and ConcatDataset's inner datasets are checked, and
    the message names the key of the step inside them."""
    sampler = dict(type='SampleFrames', clip_len=1, num_clips=4)
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='ConcatDataset', datasets=[
            dict(pipeline=[dict(sampler, num_clips=8)]),
            dict(type='RepeatDataset', dataset=dict(pipeline=[sampler]))
        ]))))
    with pytest.raises(ValueError, match=re.escape(
            'train_dataloader.dataset.datasets.1.dataset.pipeline.0 '
            '(SampleFrames) gives 4 frames per sample')):
        check_frames_per_clip(cfg, 8, ['train'])
