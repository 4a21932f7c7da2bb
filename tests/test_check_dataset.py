"""tools/check_dataset.py on good and broken tiny datasets of both layouts."""
import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

from msnet_plugin.datasets import (generate_rawframe_dataset,
                                   generate_video_dataset)

from repo_paths import DEMO_CONFIG, REPO, STHV1_CONFIG, STHV2_CONFIG

spec = importlib.util.spec_from_file_location(
    'check_dataset', REPO / 'tools' / 'check_dataset.py')
check_dataset = importlib.util.module_from_spec(spec)
# Registered so that worker processes can unpickle its functions.
sys.modules['check_dataset'] = check_dataset
spec.loader.exec_module(check_dataset)


def data_options(split, ann_file, prefix):
    return ['--cfg-options', f'{split}_dataloader.dataset.ann_file={ann_file}'
            ] + [f'{split}_dataloader.dataset.data_prefix.{k}={v}'
                 for k, v in prefix.items()]


@pytest.fixture
def videos(tmp_path):
    root = tmp_path / 'videos'
    ann_file = generate_video_dataset(root, num_videos=3, seed=0,
                                      num_frames=4, size=32, speed=4)
    return Path(ann_file), root


@pytest.fixture
def rawframes(tmp_path):
    root = tmp_path / 'frames'
    ann_file = generate_rawframe_dataset(root, num_videos=3, seed=0,
                                         num_frames=4, size=32, speed=4)
    return Path(ann_file), root / 'rawframes'


def run_check(config, split, ann_file, prefix, capsys):
    status = check_dataset.main(
        [str(config), '--split', split] +
        data_options(split, ann_file, prefix))
    return status, capsys.readouterr().out


def test_good_datasets_pass(videos, rawframes, capsys):
    ann_file, root = videos
    status, out = run_check(STHV2_CONFIG, 'train', ann_file, dict(video=root),
                            capsys)
    assert status == 0 and 'checking 3 clips' in out and 'train: OK' in out
    ann_file, root = rawframes
    status, out = run_check(STHV1_CONFIG, 'val', ann_file, dict(img=root),
                            capsys)
    assert status == 0 and 'val: OK' in out


def test_broken_videos_are_each_named(videos, capsys):
    ann_file, root = videos
    (root / 'videos' / '00000.mp4').unlink()
    (root / 'videos' / '00001.mp4').write_bytes(b'not a video')
    lines = ann_file.read_text().splitlines()
    lines[2] = lines[2].split()[0] + ' 174'  # the head has classes 0..173
    ann_file.write_text('\n'.join(lines) + '\n')
    status, out = run_check(STHV2_CONFIG, 'train', ann_file, dict(video=root),
                            capsys)
    assert status == 1
    assert 'train: 3 problem(s)' in out
    assert f'{root}/videos/00000.mp4: video file not found' in out
    assert f'{root}/videos/00001.mp4: decord cannot decode it' in out
    # The same message as the dataset's (msnet_plugin.datasets.
    # label_problems), for every clip instead of the first.
    assert (f'label 174 of {root}/videos/00002.mp4 (line 3 of {ann_file}) '
            'is outside 0..173 (num_classes=174)' in out)


def test_broken_rawframes_are_each_named(rawframes, capsys):
    ann_file, root = rawframes
    (root / '00000' / '00004.jpg').unlink()  # last frame of clip 0
    (root / '00001' / '00001.jpg').write_bytes(b'not a jpeg')
    shutil.rmtree(root / '00002')
    status, out = run_check(STHV1_CONFIG, 'train', ann_file, dict(img=root),
                            capsys)
    assert status == 1
    assert f'{root}/00000/00004.jpg: frame file not found' in out
    assert f'{root}/00001/00001.jpg: cannot decode the image' in out
    assert f'{root}/00002: frame folder not found' in out


def test_missing_and_malformed_annotation_files(rawframes, tmp_path, capsys):
    _, root = rawframes
    missing = tmp_path / 'missing.txt'
    status, out = run_check(STHV1_CONFIG, 'test', missing, dict(img=root),
                            capsys)
    assert status == 1
    assert (f"test_dataloader.dataset.ann_file = '{missing}': annotation "
            'file not found' in out)
    malformed = tmp_path / 'videos_list.txt'
    malformed.write_text('some/video.mp4\n')  # no frame count, no label
    status, out = run_check(STHV1_CONFIG, 'train', malformed, dict(img=root),
                            capsys)
    assert status == 1
    assert (f'line 1 of {malformed} has 1 column(s), expected <frame folder> '
            "<total frames> <label>: 'some/video.mp4'" in out)
    # A video list read as rawframes: the "frame count" is the label and
    # the label is missing.
    malformed.write_text('some/video.mp4 3\n')
    status, out = run_check(STHV1_CONFIG, 'train', malformed, dict(img=root),
                            capsys)
    assert status == 1
    assert f"line 1 of {malformed} has no label: 'some/video.mp4 3'" in out


def test_every_problem_of_a_list_is_listed(rawframes, tmp_path, capsys):
    """The dataset stops at the first problem; the tool lists them all,
    with the dataset's own checks (annotation_problems)."""
    _, root = rawframes
    ann_file = tmp_path / 'list.txt'
    ann_file.write_text('00000 4 1\n00001 4 up\n00002 4\n00000 4 1\n\n')
    status, out = run_check(STHV1_CONFIG, 'train', ann_file, dict(img=root),
                            capsys)
    assert status == 1
    assert out.splitlines() == [
        'train: 4 problem(s):',
        f"  line 2 of {ann_file}: label 'up' is not an integer (expected "
        "<frame folder> <total frames> <label>): '00001 4 up'",
        f"  line 3 of {ann_file} has no label: '00002 4'; a clip without a "
        'label would count as a wrong answer in validation and testing; add '
        'its label, or, to only predict an unlabeled list (tools/test.py '
        '--dump), give the dataset allow_unlabeled=True',
        f'  00000 is listed twice in {ann_file}: lines 1 and 4; delete one (a '
        'clip listed twice counts twice in training and evaluation)',
        f'  line 5 of {ann_file} is blank; delete it (MMAction2 would read it '
        'as a clip with no name)',
    ]


def test_a_config_it_cannot_check_ends_in_one_line(tmp_path, tool_error,
                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = tool_error('check_dataset', [
        DEMO_CONFIG, '--cfg-options',
        'train_dataloader.dataset.type=SyntheticMotionDatset'])
    assert code == 2
    assert err.startswith("error: type 'SyntheticMotionDatset' is not "
                          "registered in mmaction's dataset registry")


def test_parallel_workers_report_the_same(videos, capsys):
    ann_file, root = videos
    (root / 'videos' / '00002.mp4').unlink()
    status = check_dataset.main(
        [str(STHV2_CONFIG), '--split', 'val', '--workers', '2'] +
        data_options('val', ann_file, dict(video=root)))
    out = capsys.readouterr().out
    assert status == 1 and 'val: 1 problem(s)' in out
    assert f'{root}/videos/00002.mp4: video file not found' in out
