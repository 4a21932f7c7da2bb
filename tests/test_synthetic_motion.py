"""Tests of the synthetic motion data (generation, files, MMAction2 loading)."""
import fcntl
import json
import os
import os.path as osp
import threading

import decord
import numpy as np
import pytest
from mmaction.datasets import RawframeDataset, VideoDataset
from mmaction.registry import DATASETS

from msnet_plugin.datasets import (MOTION_CLASSES, SyntheticMotionDataset,
                                   generate_dataset_clip,
                                   generate_motion_clip,
                                   generate_rawframe_dataset,
                                   generate_video_dataset,
                                   motion_flip_label_map, motion_step,
                                   write_video)
from msnet_plugin.datasets import synthetic_motion

VIDEO_PIPELINE = [
    dict(type='DecordInit'),
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8),
    dict(type='DecordDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]
RAWFRAME_PIPELINE = [
    dict(type='SampleFrames', clip_len=1, frame_interval=1, num_clips=8),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=(-1, 64)),
    dict(type='FormatShape', input_format='NCHW'),
    dict(type='PackActionInputs'),
]


def estimate_step(previous_frame, next_frame):
    """(dx, dy) maximising the circular cross-correlation of two frames.

    Frames are (H, W, 3) arrays; the step is the translation (with
    wrap-around) that best maps ``previous_frame`` onto ``next_frame``.
    """
    previous_grey = previous_frame.astype(np.float64).mean(axis=-1)
    next_grey = next_frame.astype(np.float64).mean(axis=-1)
    previous_grey -= previous_grey.mean()
    next_grey -= next_grey.mean()
    correlation = np.fft.ifft2(
        np.conj(np.fft.fft2(previous_grey)) * np.fft.fft2(next_grey)).real
    dy, dx = np.unravel_index(np.argmax(correlation), correlation.shape)
    height, width = correlation.shape
    return ((dx + width // 2) % width - width // 2,
            (dy + height // 2) % height - height // 2)


def read_annotation_labels(ann_path):
    """Last whitespace-separated field of each annotation line, as int."""
    with open(ann_path) as ann_file:
        return [int(line.split()[-1]) for line in ann_file]


def test_clips_are_deterministic_from_seed():
    first = generate_dataset_clip(3, 5, 8, 32, 8, 4)
    again = generate_dataset_clip(3, 5, 8, 32, 8, 4)
    other_seed = generate_dataset_clip(4, 5, 8, 32, 8, 4)
    other_index = generate_dataset_clip(3, 6, 8, 32, 8, 4)
    assert first[0].dtype == np.uint8 and first[0].shape == (8, 32, 32, 3)
    assert np.array_equal(first[0], again[0]) and first[1] == again[1]
    assert not np.array_equal(first[0], other_seed[0])
    assert not np.array_equal(first[0], other_index[0])


@pytest.mark.parametrize('num_classes', [4, 8])
def test_each_frame_is_previous_frame_moved_by_labelled_step(num_classes):
    for index in range(num_classes):
        frames, label = generate_dataset_clip(0, index, 8, 32, 4,
                                              num_classes)
        dx, dy = motion_step(MOTION_CLASSES[label], 4)
        assert (abs(dx), abs(dy)) in {(4, 0), (0, 4), (4, 4)}
        for previous_frame, next_frame in zip(frames[:-1], frames[1:]):
            assert np.array_equal(
                next_frame, np.roll(previous_frame, (dy, dx), axis=(0, 1)))
            assert estimate_step(previous_frame, next_frame) == (dx, dy)


def test_first_frame_does_not_depend_on_direction():
    first_frames = [
        generate_motion_clip(np.random.default_rng(7), direction, 4, 32,
                             8)[0] for direction in MOTION_CLASSES
    ]
    for first_frame in first_frames[1:]:
        assert np.array_equal(first_frame, first_frames[0])


def test_single_frames_do_not_reveal_label_but_motion_does():
    """Nearest class mean on one random frame is at chance; motion is exact."""
    frame_rng = np.random.default_rng(0)

    def single_frames_and_labels(seed, num_clips):
        frames, labels, steps = [], [], []
        for index in range(num_clips):
            clip, label = generate_dataset_clip(seed, index, 8, 32, 8, 4)
            frames.append(clip[frame_rng.integers(8)].astype(np.float64))
            labels.append(label)
            steps.append(estimate_step(clip[0], clip[1]))
        return np.stack(frames).reshape(num_clips, -1), np.array(
            labels), steps

    train_frames, train_labels, _ = single_frames_and_labels(0, 200)
    test_frames, test_labels, test_steps = single_frames_and_labels(1, 200)
    class_means = np.stack(
        [train_frames[train_labels == label].mean(0) for label in range(4)])
    distances = ((test_frames[:, None] - class_means[None])**2).sum(-1)
    single_frame_accuracy = np.mean(distances.argmin(1) == test_labels)
    assert single_frame_accuracy < 0.4  # chance is 0.25
    assert all(
        step == motion_step(MOTION_CLASSES[label], 8)
        for step, label in zip(test_steps, test_labels))


def test_decord_reads_written_video(tmp_path):
    frames, label = generate_dataset_clip(0, 2, 8, 64, 8, 4)
    video_path = str(tmp_path / 'sub' / 'clip.mp4')
    write_video(video_path, frames)
    assert os.listdir(tmp_path / 'sub') == ['clip.mp4']

    reader = decord.VideoReader(video_path)
    decoded = reader.get_batch(list(range(len(reader)))).asnumpy()
    assert decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames).mean() < 12
    dx, dy = motion_step(MOTION_CLASSES[label], 8)
    for previous_frame, next_frame in zip(decoded[:-1], decoded[1:]):
        assert estimate_step(previous_frame, next_frame) == (dx, dy)


def test_write_video_rejects_odd_frame_size(tmp_path):
    with pytest.raises(ValueError, match='even'):
        write_video(str(tmp_path / 'odd.mp4'), np.zeros((2, 33, 32, 3),
                                                        np.uint8))


@pytest.mark.parametrize('speed, num_classes', [(16, 4), (0, 4), (8, 5)])
def test_invalid_parameters_are_rejected(tmp_path, speed, num_classes):
    with pytest.raises(ValueError):
        generate_video_dataset(
            str(tmp_path), 4, 0, size=32, speed=speed, num_classes=num_classes)


def test_video_dataset_loads_through_decord_pipeline(tmp_path):
    ann_path = generate_video_dataset(str(tmp_path), 8, 0, size=32)
    assert ann_path == str(tmp_path / 'annotations.txt')
    labels = read_annotation_labels(ann_path)
    assert labels == [0, 1, 2, 3, 0, 1, 2, 3]

    dataset = VideoDataset(
        ann_path, VIDEO_PIPELINE, data_prefix=dict(video=str(tmp_path)))
    assert len(dataset) == 8
    for index in (0, 3):
        sample = dataset[index]
        assert sample['inputs'].shape == (8, 3, 64, 64)
        assert sample['data_samples'].gt_label.item() == labels[index]


def test_registered_dataset_builds_and_loads(tmp_path):
    dataset = DATASETS.build(
        dict(
            type='SyntheticMotionDataset',
            data_root=str(tmp_path),
            num_videos=8,
            seed=1,
            size=32,
            num_classes=8,
            pipeline=VIDEO_PIPELINE,
            test_mode=True))
    assert isinstance(dataset, SyntheticMotionDataset)
    assert isinstance(dataset, VideoDataset)
    assert dataset.metainfo['classes'] == MOTION_CLASSES
    assert len(dataset) == 8
    sample = dataset[5]
    assert sample['inputs'].shape == (8, 3, 64, 64)
    assert sample['data_samples'].gt_label.item() == 5


def test_rawframe_dataset_loads_in_sthv1_layout(tmp_path):
    ann_path = generate_rawframe_dataset(str(tmp_path), 4, 0, size=32)
    frame_dir = tmp_path / 'rawframes' / '00002'
    assert sorted(os.listdir(frame_dir)) == [
        f'{number:05}.jpg' for number in range(1, 9)
    ]
    with open(ann_path) as ann_file:
        assert ann_file.readline() == '00000 8 0\n'

    dataset = RawframeDataset(
        ann_path,
        RAWFRAME_PIPELINE,
        data_prefix=dict(img=str(tmp_path / 'rawframes')),
        filename_tmpl='{:05}.jpg')
    sample = dataset[2]
    assert sample['inputs'].shape == (8, 3, 64, 64)
    assert sample['data_samples'].gt_label.item() == 2

    raw_dataset = RawframeDataset(
        ann_path,
        RAWFRAME_PIPELINE[:2],
        data_prefix=dict(img=str(tmp_path / 'rawframes')),
        filename_tmpl='{:05}.jpg')
    decoded = np.stack(raw_dataset[2]['imgs'])
    frames, _ = generate_dataset_clip(0, 2, 8, 32, 8, 4)
    assert np.abs(decoded.astype(int) - frames).mean() < 6


def count_write_video_calls(monkeypatch, fail_after=None):
    """Count (and optionally fail) the generator's calls of write_video."""
    calls = []

    def counting_write_video(path, frames):
        if fail_after is not None and len(calls) == fail_after:
            raise RuntimeError('simulated crash')
        calls.append(path)
        write_video(path, frames)

    monkeypatch.setattr(synthetic_motion, 'write_video', counting_write_video)
    return calls


def test_unchanged_parameters_reuse_and_changed_ones_regenerate(
        tmp_path, monkeypatch):
    calls = count_write_video_calls(monkeypatch)
    root = str(tmp_path)
    generate_video_dataset(root, 4, 0, size=32, speed=8)
    generate_video_dataset(root, 4, 0, size=32, speed=8)
    assert len(calls) == 4

    ann_path = generate_video_dataset(root, 4, 0, size=32, speed=4)
    assert len(calls) == 8
    with open(tmp_path / 'annotations.json') as params_file:
        assert json.load(params_file)['speed'] == 4
    reader = decord.VideoReader(str(tmp_path / 'videos' / '00000.mp4'))
    decoded = reader.get_batch([0, 1]).asnumpy()
    assert estimate_step(decoded[0], decoded[1]) == (4, 0)
    assert read_annotation_labels(ann_path) == [0, 1, 2, 3]


def test_half_written_dataset_is_regenerated(tmp_path, monkeypatch):
    root = str(tmp_path)
    generate_video_dataset(root, 4, 0, size=32)
    count_write_video_calls(monkeypatch, fail_after=2)
    with pytest.raises(RuntimeError, match='simulated crash'):
        generate_video_dataset(root, 6, 0, size=32)
    assert not osp.exists(tmp_path / 'annotations.txt')
    assert not any(
        name.endswith('.tmp') or '.tmp.' in name
        for name in os.listdir(tmp_path))

    calls = count_write_video_calls(monkeypatch)
    ann_path = generate_video_dataset(root, 6, 0, size=32)
    assert len(calls) == 6
    assert len(read_annotation_labels(ann_path)) == 6

    os.remove(ann_path)
    generate_video_dataset(root, 6, 0, size=32)
    assert len(calls) == 12


def test_generation_waits_for_the_lock(tmp_path):
    root = str(tmp_path)
    results = []
    with synthetic_motion.generation_lock(root):
        worker = threading.Thread(
            target=lambda: results.append(
                generate_video_dataset(root, 2, 0, size=32)))
        worker.start()
        worker.join(timeout=0.5)
        assert worker.is_alive()
        assert not osp.exists(tmp_path / 'annotations.txt')
    worker.join(timeout=30)
    assert results == [str(tmp_path / 'annotations.txt')]
    with open(tmp_path / synthetic_motion.LOCK_FILE) as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_command_line_writes_dataset(tmp_path, capsys, load_tool):
    load_tool('generate_synthetic_motion').main([
        '--root',
        str(tmp_path), '--num-videos', '4', '--seed', '0', '--size', '32',
        '--rawframes'
    ])
    ann_path = str(tmp_path / 'rawframe_annotations.txt')
    assert ann_path in capsys.readouterr().out
    assert read_annotation_labels(ann_path) == [0, 1, 2, 3]


def test_command_line_names_a_size_it_cannot_write(tmp_path, tool_error):
    code, err = tool_error('generate_synthetic_motion', [
        '--root', tmp_path / 'data', '--num-videos', '2', '--seed', '0',
        '--size', '16'])
    assert code == 2
    assert err.startswith('error: size=16 is below 32 px')
    assert not (tmp_path / 'data' / 'annotations.txt').exists()


# --- the flip label map: mirror-image class pairs ---------------------------

@pytest.mark.parametrize('num_classes,expected', [
    (4, {0: 1, 1: 0}),
    (8, {0: 1, 1: 0, 4: 5, 5: 4, 6: 7, 7: 6}),
])
def test_flipped_clip_moves_as_the_mapped_label(num_classes, expected):
    flip_map = motion_flip_label_map(num_classes)
    assert flip_map == expected
    for index in range(num_classes):
        frames, label = generate_dataset_clip(0, index, 3, 32, 4, num_classes)
        mirrored = np.ascontiguousarray(frames[:, :, ::-1])
        flipped_label = flip_map.get(label, label)
        assert estimate_step(mirrored[0], mirrored[1]) == motion_step(
            MOTION_CLASSES[flipped_label], 4)


def test_flip_label_map_names_bad_class_counts():
    with pytest.raises(ValueError, match='num_classes must be one of'):
        motion_flip_label_map(6)
