"""tools/visualize_motion.py and tools/demo.py end to end on a generated
video (their main(argv), in this process), and MotionVisualizationHook in a
Runner's validation."""
from pathlib import Path

import decord
import mmcv
import numpy as np
import pytest
import torch
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

from msnet_plugin.datasets import (generate_motion_clip, motion_classes,
                                   write_video)
from msnet_plugin.hooks import MotionVisualizationHook
from msnet_plugin.visualization import MotionGridLayout
from msnet_plugin.visualization.inference import video_pipeline

from repo_paths import DEMO_CONFIG, REPO, STHV1_CONFIG

HOOK_CONFIG = REPO / 'configs' / 'msnet_r18_demo_synthetic_motion_vis.py'
LABEL_MAP = REPO / 'resources' / 'label_map_synthetic_motion.txt'


@pytest.fixture(scope='module')
def video_and_checkpoint(tmp_path_factory):
    """A generated 64 px clip moving right (mp4) and a checkpoint of the
    demo model (random weights, saved as mmengine saves them)."""
    folder = tmp_path_factory.mktemp('tools')
    video = folder / 'right.mp4'
    write_video(str(video),
                generate_motion_clip(np.random.default_rng(0), 'right'))
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(DEMO_CONFIG).model)
    checkpoint = folder / 'msnet.pth'
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), checkpoint)
    return video, checkpoint


def test_label_map_is_the_synthetic_classes():
    assert LABEL_MAP.read_text().split() == list(motion_classes(4))


def test_visualize_motion_writes_a_grid_and_a_gif(tmp_path, capsys,
                                                  load_tool,
                                                  video_and_checkpoint):
    video, _ = video_and_checkpoint
    out = tmp_path / 'out'
    clips = load_tool('visualize_motion.py').main([
        str(DEMO_CONFIG), 'none', str(video), '--out', str(out),
        '--label-map', str(LABEL_MAP)
    ])
    output = capsys.readouterr().out
    assert 'RANDOM weights' in output
    png, gif = out / 'right_clip0.png', out / 'right_clip0.gif'
    assert f'wrote {png} and {gif}' in output
    # One clip of 8 frames of 64 px, enlarged twice to 128 px panels.
    [(frames, displacement, confidence)] = clips
    assert frames.shape == (8, 64, 64, 3)
    assert displacement.shape == (8, 2, 8, 8)
    assert confidence.shape == (8, 1, 8, 8)
    layout = MotionGridLayout(8, 128, 128, title=True)
    with Image.open(png) as image:
        assert image.size == layout.shape[::-1]
        grid = np.asarray(image.convert('RGB'))
    np.testing.assert_array_equal(
        grid[layout.panel_box(0, 3)], frames[3].repeat(2, 0).repeat(2, 1))
    with Image.open(gif) as animation:
        assert animation.n_frames == 8
        assert animation.size == (4 * 128 + 5 * 2, 128)


def test_visualize_motion_names_a_missing_video(tmp_path, capsys, load_tool):
    with pytest.raises(SystemExit):
        load_tool('visualize_motion.py').main([
            str(DEMO_CONFIG), 'none', str(tmp_path / 'missing.mp4'), '--out',
            str(tmp_path)
        ])
    assert (f'video not found: {tmp_path}/missing.mp4'
            in capsys.readouterr().err)


def test_rawframe_test_pipeline_reads_a_video_file(video_and_checkpoint):
    """sthv1 tests on rawframes: 8 segments sampled twice, three 256 px
    crops; the tools read the same from an mp4 through decord."""
    video, _ = video_and_checkpoint
    data = video_pipeline(Config.fromfile(STHV1_CONFIG))(
        dict(filename=str(video), label=-1, start_index=0, modality='RGB'))
    assert data['inputs'].shape == (8 * 2 * 3, 3, 256, 256)


def test_demo_prints_top_labels_and_writes_the_labelled_video(
        tmp_path, capsys, load_tool, video_and_checkpoint):
    video, checkpoint = video_and_checkpoint
    out = tmp_path / 'labelled.mp4'
    load_tool('demo.py').main([
        str(DEMO_CONFIG), str(checkpoint), str(video), '--label-map',
        str(LABEL_MAP), '--out-filename', str(out)
    ])
    lines = capsys.readouterr().out.splitlines()
    start = lines.index('The top-5 labels with their scores are:')
    top = [line.split(': ') for line in lines[start + 1:start + 5]]
    assert sorted(name for name, _ in top) == sorted(motion_classes(4))
    scores = [float(score) for _, score in top]
    assert scores == sorted(scores, reverse=True)
    assert sum(scores) == pytest.approx(1, abs=1e-3)  # softmax of 4 classes
    reader = decord.VideoReader(str(out))
    assert len(reader) == 8
    # 64 px frames are enlarged to a 224 px short side for the text.
    assert reader[0].shape == (224, 224, 3)
    # The labelled video shows the clip (MMAction2's visualizer draws the
    # label text in a corner): away from the text it is the input frame.
    original = mmcv.imresize(decord.VideoReader(str(video))[0].asnumpy(),
                             (224, 224))
    difference = np.abs(reader[0].asnumpy().astype(float) - original)
    assert difference[120:, 120:].mean() < 15


def hook_runner(tmp_path, **hook_args):
    """The motion-vis demo config on 6 tiny validation clips, batches of 2,
    with MotionVisualizationHook(**hook_args)."""
    cfg = Config.fromfile(HOOK_CONFIG)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.custom_hooks = [
        dict(type='MotionVisualizationHook', **hook_args)
    ]
    cfg.default_hooks.checkpoint.save_best = None  # Runner.val() only
    # Runner.val() builds the train loader too (RuntimeInfoHook reads
    # max_iters): keep it tiny and out of the working directory.
    for split, num_videos in (('train', 4), ('val', 6)):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=2, num_workers=0, persistent_workers=False)
        loader.dataset.update(data_root=str(tmp_path / split),
                              num_videos=num_videos, size=32, speed=4)
    return Runner.from_cfg(cfg)


@pytest.mark.slow
def test_hook_sends_motion_grids_to_the_visualizer_every_n_validations(
        tmp_path):
    runner = hook_runner(tmp_path, interval=2, num_clips=3)
    images = Path(runner.log_dir) / 'vis_data' / 'vis_image'
    runner.val()
    assert not list(images.glob('motion_clip*'))  # 1st validation: skipped
    runner.val()
    drawn = sorted(path.name for path in images.glob('motion_clip*'))
    # Three clips, across the first two batches, at step runner.iter = 0.
    assert drawn == [f'motion_clip{k}_0.png' for k in range(3)]
    layout = MotionGridLayout(8, 32, 32, title=True)
    for name in drawn:
        with Image.open(images / name) as image:
            assert image.size == layout.shape[::-1]
    # The hook removed its recorder: the MS module has no hook left.
    assert not runner.model.backbone.ms_layer2._forward_pre_hooks


def test_hook_names_a_missing_motion_squeeze_before_running(tmp_path):
    runner = hook_runner(tmp_path, module_name='backbone.ms_layer3')
    with pytest.raises(ValueError, match="no MotionSqueeze module named "
                       "'backbone.ms_layer3'"):
        runner.val()


@pytest.mark.parametrize('kwargs, message', [
    (dict(interval=0), 'interval must be a positive int'),
    (dict(num_clips=1.5), 'num_clips must be a positive int'),
    (dict(full_saturation=0), 'full_saturation must be positive'),
])
def test_hook_names_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MotionVisualizationHook(**kwargs)


# --- bad input: a checkpoint of another model, a video that does not decode


@pytest.mark.slow
@pytest.mark.parametrize('tool, extra', [
    ('demo.py', []), ('visualize_motion.py', ['--out', 'OUT']),
    ('export.py', ['--out', 'OUT/model.onnx']),
])
def test_tools_refuse_a_checkpoint_of_another_head(
        tmp_path, tool_error, video_and_checkpoint,
        eight_class_demo_checkpoint, tool, extra):
    """Where init_recognizer would only warn and run a 4-class head at its
    random init, the tools stop with the shapes that differ."""
    video, _ = video_and_checkpoint
    out = tmp_path / 'out'
    arguments = [DEMO_CONFIG, eight_class_demo_checkpoint] + (
        [] if tool == 'export.py' else [video])
    arguments += [str(arg).replace('OUT', str(out)) for arg in extra]
    code, err = tool_error(tool, arguments)
    assert code == 2
    assert err.splitlines()[:4] == [
        f'error: checkpoint {eight_class_demo_checkpoint} does not fit the '
        'model Recognizer2D:', '  2 different shapes:',
        '    cls_head.fc_cls.bias: checkpoint (8,) vs model (4,)',
        '    cls_head.fc_cls.weight: checkpoint (8, 512) vs model (4, 512)']
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize('tool, extra', [
    ('demo.py', ['--out-filename', 'OUT/labelled.mp4']),
    ('visualize_motion.py', ['--out', 'OUT']),
])
@pytest.mark.parametrize('how', ['corrupt', 'empty'])
def test_tools_name_a_video_that_does_not_decode(
        tmp_path, tool_error, video_and_checkpoint, tool, extra, how):
    video, checkpoint = video_and_checkpoint
    bad = tmp_path / 'bad.mp4'
    data = video.read_bytes()
    bad.write_bytes(bytes(reversed(data)) if how == 'corrupt' else b'')
    out = tmp_path / 'out'
    code, err = tool_error(tool, [
        DEMO_CONFIG, checkpoint, bad,
        *[arg.replace('OUT', str(out)) for arg in extra]
    ])
    assert code == 2
    assert err.startswith(f'error: cannot load {bad}: '), err
    assert len(err.strip().splitlines()) == 1, err
    assert not out.exists()
