"""A pipeline whose frame sampling does not give the model whole clips
(msnet_plugin/pipeline_checks.py): SampleFrames' clip_len x num_clips must
be num_segments in training, a multiple of it in testing. Refused before
anything is built, naming the step; every config of the repository
passes."""
from pathlib import Path

import pytest
from mmengine.config import Config

from msnet_plugin.checks import check_segment_counts
from msnet_plugin.cli import EXIT_USER_ERROR
from msnet_plugin.pipeline_checks import check_frames_per_clip

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / 'configs' / 'msnet_r18_demo_synthetic.py'


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
