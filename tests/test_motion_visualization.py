"""Drawing motion maps: colours against the legend, grid panels, and the
direction a randomly initialised MSNet reads from generated clips."""
import colorsys

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample
from mmengine.config import Config
from PIL import Image

from msnet_plugin.datasets import generate_motion_clip, motion_step
from msnet_plugin.models import MotionSqueeze
from msnet_plugin.visualization import (ROW_NAMES, MotionGridLayout,
                                        MotionRecorder, colour_wheel,
                                        confidence_to_color, flow_to_color,
                                        motion_gif_frames, motion_grid,
                                        save_gif, split_clips)
from msnet_plugin.visualization.motion_maps import resize_maps

from repo_paths import DEMO_CONFIG


WHEEL = 65  # odd: the centre is a pixel


def hue_degrees(rgb):
    """Hue in degrees and saturation of uint8 RGB pixels (..., 3)."""
    pixels = rgb.reshape(-1, 3) / 255.0
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in pixels])
    return hsv[:, 0] * 360, hsv[:, 1]


def angle_between(a, b):
    return np.abs((np.asarray(a) - b + 180) % 360 - 180)


def legend_hue(direction):
    """Hue the colour wheel gives at its rim in screen direction (dx, dy)."""
    wheel = colour_wheel(WHEEL)
    centre, reach = WHEEL // 2, WHEEL // 2 - 2
    dx, dy = np.sign(direction)
    pixel = wheel[centre + dy * reach, centre + dx * reach]
    return hue_degrees(pixel)[0][0]


def test_legend_hues_are_the_screen_directions():
    # Right red (0), down 90, left 180, up 270: y grows downwards.
    for direction, hue in (((1, 0), 0), ((0, 1), 90), ((-1, 0), 180),
                           ((0, -1), 270)):
        assert angle_between(legend_hue(direction), hue) < 4, direction
    wheel = colour_wheel(WHEEL)
    assert (wheel[WHEEL // 2, WHEEL // 2] >= 250).all()  # no motion: white
    assert (wheel[0, 0] == 255).all()  # outside the disc


def test_flow_colour_saturation_is_magnitude_clipped_at_full_saturation():
    displacement = np.array([[[0.0, 0.5, 1.0, 3.0]], [[0.0, 0.0, 0.0, 0.0]]])
    _, saturation = hue_degrees(flow_to_color(displacement, 1.0))
    np.testing.assert_allclose(saturation, [0, 0.5, 1, 1], atol=0.01)
    with pytest.raises(ValueError, match='full_saturation'):
        flow_to_color(displacement, 0)
    with pytest.raises(ValueError, match=r'displacement must have shape'):
        flow_to_color(np.zeros((3, 2, 2)), 1.0)


def test_grid_has_the_expected_size_and_panels():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 32, 48, 3), dtype=np.uint8)
    displacement = rng.uniform(-1, 1, (4, 2, 4, 6))
    confidence = rng.uniform(0, 1, (4, 1, 4, 6))
    grid = motion_grid(frames, displacement, confidence, 1.0, 'a title')
    layout = MotionGridLayout(4, 32, 48, title=True)
    assert grid.shape == layout.shape + (3, ) == (3 * (14 + 32 + 2) + 14,
                                                 2 + 5 * (48 + 2), 3)
    assert len(ROW_NAMES) == 3
    for t in range(4):
        np.testing.assert_array_equal(grid[layout.panel_box(0, t)],
                                      frames[t])
        np.testing.assert_array_equal(
            grid[layout.panel_box(1, t)],
            flow_to_color(resize_maps(displacement[t], 32, 48), 1.0))
        np.testing.assert_array_equal(
            grid[layout.panel_box(2, t)],
            confidence_to_color(resize_maps(confidence[t], 32, 48)))
    legend = grid[layout.panel_box(1, 4)]
    np.testing.assert_array_equal(legend[:, 8:40], colour_wheel(32))
    # Maps are upsampled bilinearly, cell centres at pixel centres: a ramp
    # over the cells is a ramp over the pixels (inside the outer half cells).
    ramp = np.broadcast_to(np.arange(6.0), (2, 4, 6))
    expected = (np.arange(48) + 0.5) / 8 - 0.5
    np.testing.assert_allclose(
        resize_maps(ramp, 32, 48)[:, :, 4:-4],
        np.broadcast_to(expected[4:-4], (2, 32, 40)), atol=1e-5)
    untitled = motion_grid(frames, displacement, confidence, 1.0)
    assert untitled.shape[0] == grid.shape[0] - 14
    with pytest.raises(ValueError, match=r'displacement must be \(T=4'):
        motion_grid(frames, displacement[:3], confidence, 1.0)


def test_gif_has_one_image_per_frame(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    images = motion_gif_frames(frames, rng.uniform(-1, 1, (3, 2, 2, 2)),
                               rng.uniform(0, 1, (3, 1, 2, 2)), 1.0)
    save_gif(str(tmp_path / 'clip.gif'), images, fps=4)
    with Image.open(tmp_path / 'clip.gif') as gif:
        assert gif.n_frames == 3
        assert gif.size == (4 * 16 + 5 * 2, 16)
        assert gif.info['duration'] == 250


def test_recorder_names_what_is_wrong():
    with pytest.raises(ValueError, match='has no MotionSqueeze module'):
        MotionRecorder(nn.Sequential(nn.Conv2d(3, 3, 1)))
    model = nn.Sequential(MotionSqueeze(8, num_segments=2))
    with pytest.raises(ValueError, match=r"no MotionSqueeze module named "
                       r"'backbone.ms_layer2'; this model has \['0'\]"):
        MotionRecorder(model, 'backbone.ms_layer2')
    with MotionRecorder(model) as recorder:
        with pytest.raises(RuntimeError, match='0 has not run'):
            recorder.motion()
        model(torch.randn(4, 8, 5, 5))
        displacement, confidence = recorder.motion()
    assert displacement.shape == (4, 2, 5, 5)
    assert confidence.shape == (4, 1, 5, 5)
    assert not model[0]._forward_pre_hooks  # removed on exit


@pytest.fixture(scope='module')
def random_msnet():
    """The demo's MSNet-R18, randomly initialised (seeded), in eval mode."""
    torch.manual_seed(0)
    cfg = Config.fromfile(DEMO_CONFIG)
    return MODELS.build(cfg.model).eval()


def test_random_msnet_colours_motion_with_the_legend_hue(random_msnet):
    """Textures moving right, left, down, up and a still one (64 px, 8 px
    per frame = 1 feature cell): in the interior of the maps, displacement
    pixels take the hue the legend gives that direction; the still clip
    stays nearly white (low magnitude)."""
    directions = ('right', 'left', 'down', 'up')
    clips = [
        generate_motion_clip(np.random.default_rng(7), d, 8, 64, 8)
        for d in directions
    ]
    clips.append(np.repeat(clips[0][:1], 8, axis=0))
    inputs = [torch.from_numpy(c).permute(0, 3, 1, 2) for c in clips]
    with MotionRecorder(random_msnet) as recorder:
        random_msnet.test_step(
            dict(inputs=inputs, data_samples=[ActionDataSample()] * 5))
        displacement, confidence = recorder.motion()
    assert recorder.module_name == 'backbone.ms_layer2'
    assert displacement.shape == (40, 2, 8, 8)
    samples = list(split_clips(inputs, displacement, confidence, 8))
    assert [len(s) for s in samples] == [1] * 5
    interior = (slice(None), slice(16, 48), slice(16, 48))
    for direction, clip, [(frames, disp, conf)] in zip(
            directions + ('still', ), clips, samples):
        np.testing.assert_array_equal(frames, clip)
        # Frame 7 repeats the maps of pair (6, 7).
        panels = np.stack([
            flow_to_color(resize_maps(d, 64, 64), 1.0) for d in disp[:7]
        ])
        hue, saturation = hue_degrees(panels[interior])
        if direction == 'still':
            assert np.median(saturation) < 0.2, direction
            assert np.abs(disp).mean() < 0.2
            continue
        error = angle_between(hue, legend_hue(motion_step(direction, 1)))
        assert np.median(error) < 20, (direction, np.median(error))
        assert np.mean(error < 45) > 0.75, (direction, np.mean(error < 45))
        assert np.median(saturation) > 0.5, direction
