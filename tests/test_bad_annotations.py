"""Annotation lists a user can get wrong: empty, a label that is not a number
or missing, too many or too few columns, a clip listed twice, a label out of
range in a multi-class list; and clips without a label in validation and
test, which must not count as wrong answers. Each test checks the message."""
import pickle
from pathlib import Path

import pytest
import torch
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.runner import Runner

from msnet_plugin.cli import EXIT_USER_ERROR
from msnet_plugin.datasets import (CheckedRawframeDataset,
                                   CheckedVideoDataset,
                                   generate_video_dataset, raw_data_list)
from msnet_plugin.errors import AnnotationError, ConfigError

from repo_paths import DEMO_CONFIG

USAGE = '<video> <label>'


def video_list(tmp_path, text, **kwargs):
    """A CheckedVideoDataset over an annotation list holding ``text`` (the
    videos need not exist: lists are checked when the dataset is built)."""
    ann_file = tmp_path / 'list.txt'
    ann_file.write_text(text)
    return lambda: CheckedVideoDataset(
        ann_file=str(ann_file), pipeline=[],
        data_prefix=dict(video=str(tmp_path)), **kwargs), ann_file


def error_of(build):
    with pytest.raises(AnnotationError) as error:
        build()
    return str(error.value)


def test_empty_list(tmp_path):
    build, ann_file = video_list(tmp_path, '')
    assert error_of(build) == (f'{ann_file} lists no clips (the file is '
                               f'empty); write one line per clip: {USAGE}')


def test_label_that_is_not_a_number(tmp_path):
    build, ann_file = video_list(tmp_path, '0.mp4 1\n1.mp4 left\n')
    assert error_of(build) == (
        f"line 2 of {ann_file}: label 'left' is not an integer (expected "
        f"{USAGE}): '1.mp4 left'")


@pytest.mark.parametrize('test_mode', [False, True], ids=['train', 'test'])
@pytest.mark.parametrize('line', ['2.mp4', '2.mp4 -1'])
def test_clip_without_a_label_is_refused_in_training_and_testing(
        tmp_path, test_mode, line):
    """MMAction2 gives such a clip the label -1, which accuracy counts as a
    wrong answer: a test list must be labelled too."""
    build, ann_file = video_list(tmp_path, f'0.mp4 1\n1.mp4 2\n{line}\n',
                                 test_mode=test_mode)
    assert error_of(build) == (
        f"line 3 of {ann_file} has no label: '{line}'; a clip without a "
        'label would count as a wrong answer in validation and testing; add '
        'its label, or, to only predict an unlabeled list (tools/test.py '
        '--dump), give the dataset allow_unlabeled=True')


def test_too_many_columns_and_a_doubled_delimiter(tmp_path):
    build, ann_file = video_list(tmp_path, '0.mp4 1\n1.mp4 1 2\n')
    assert error_of(build) == (
        f"line 2 of {ann_file} has 3 column(s), expected {USAGE}: "
        "'1.mp4 1 2'")
    build, ann_file = video_list(tmp_path, '0.mp4  1\n')
    assert error_of(build) == (
        f'line 1 of {ann_file} has 3 column(s), expected {USAGE} (two '
        "delimiters in a row make an empty column): '0.mp4  1'")


def test_too_few_columns_and_a_bad_frame_count_in_a_rawframe_list(
        tmp_path):
    ann_file = tmp_path / 'rawframes.txt'
    ann_file.write_text('00000 8 1\n00001\n00002 eight 2\n00003 0 3\n')

    def build():
        return CheckedRawframeDataset(ann_file=str(ann_file), pipeline=[],
                                      data_prefix=dict(img=str(tmp_path)))

    usage = '<frame folder> <total frames> <label>'
    assert error_of(build) == (
        f"line 2 of {ann_file} has 1 column(s), expected {usage}: '00001' "
        '(and 2 more problems: python tools/check_dataset.py CONFIG lists '
        'them all)')
    ann_file.write_text('00002 eight 2\n')
    assert error_of(build) == (
        f"line 1 of {ann_file}: total frames 'eight' is not an integer "
        f"(expected {usage}): '00002 eight 2'")
    ann_file.write_text('00003 0 3\n')
    assert error_of(build) == (
        f"line 1 of {ann_file}: total frames 0, a clip needs at least 1: "
        "'00003 0 3'")


def test_blank_line(tmp_path):
    build, ann_file = video_list(tmp_path, '0.mp4 1\n\n1.mp4 2\n')
    assert error_of(build) == (
        f'line 2 of {ann_file} is blank; delete it (MMAction2 would read it '
        'as a clip with no name)')


def test_clip_listed_twice(tmp_path):
    build, ann_file = video_list(tmp_path, '0.mp4 1\n1.mp4 2\n0.mp4 3\n')
    assert error_of(build) == (
        f'0.mp4 is listed twice in {ann_file}: lines 1 and 3; delete one (a '
        'clip listed twice counts twice in training and evaluation)')


def test_same_folder_at_other_offsets_is_not_a_duplicate(tmp_path):
    """Untrimmed rawframe lists (``with_offset``) name one folder per
    segment."""
    ann_file = tmp_path / 'segments.txt'
    ann_file.write_text('long 0 8 1\nlong 8 8 2\nlong 8 8 2\n')
    with pytest.raises(AnnotationError, match='lines 2 and 3'):
        CheckedRawframeDataset(ann_file=str(ann_file), pipeline=[],
                               with_offset=True)
    ann_file.write_text('long 0 8 1\nlong 8 8 2\n')
    dataset = CheckedRawframeDataset(ann_file=str(ann_file), pipeline=[],
                                     with_offset=True)
    assert [d['offset'] for d in raw_data_list(dataset)] == [0, 8]


def test_label_out_of_range_in_a_multi_class_list(tmp_path):
    build, ann_file = video_list(tmp_path, '0.mp4 0 2\n1.mp4 1 3 4\n',
                                 multi_class=True, num_classes=4)
    assert error_of(build) == (
        f'label 4 of {tmp_path}/1.mp4 (line 2 of {ann_file}) is outside 0..3 '
        '(num_classes=4)')
    build, ann_file = video_list(tmp_path, '0.mp4 0 2\n1.mp4 1 -3\n',
                                 multi_class=True, num_classes=4)
    assert error_of(build) == (
        f"line 2 of {ann_file}: label -3 is negative (labels count from 0): "
        "'1.mp4 1 -3'")
    build, _ = video_list(tmp_path, '0.mp4 0 2\n1.mp4 1 3\n',
                          multi_class=True, num_classes=4)
    assert [d['label'] for d in raw_data_list(build())] == [[0, 2], [1, 3]]


def test_unlabeled_clips_are_for_test_sets_only(tmp_path):
    build, ann_file = video_list(tmp_path, '0.mp4\n', allow_unlabeled=True)
    with pytest.raises(ConfigError, match='allow_unlabeled=True is for test '
                       'sets'):
        build()
    build, _ = video_list(tmp_path, '0.mp4\n1.mp4 2\n', allow_unlabeled=True,
                          test_mode=True)
    dataset = build()
    assert [d['label'] for d in raw_data_list(dataset)] == [-1, 2]
    assert dataset.unlabeled_lines() == [1]


def config_testing_on(tmp_path, **dataset):
    """A config file that tests the demo model on a CheckedVideoDataset with
    these arguments, in the foreground."""
    config = tmp_path / 'test_config.py'
    config.write_text(
        f'_base_ = [{str(DEMO_CONFIG)!r}]\n'
        'test_dataloader = dict(num_workers=0, persistent_workers=False, '
        'dataset=dict(_delete_=True, type="CheckedVideoDataset", '
        'pipeline={{_base_.val_pipeline}}, test_mode=True, '
        + ', '.join(f'{k}={v!r}' for k, v in dataset.items()) + '))\n')
    return config


@pytest.fixture
def demo_checkpoint(tmp_path):
    """The demo model's initial weights, saved as mmengine saves them."""
    path = tmp_path / 'demo.pth'
    torch.save(dict(meta=dict(epoch=1, iter=1), state_dict=MODELS.build(
        Config.fromfile(DEMO_CONFIG).model).state_dict()), path)
    return path


@pytest.mark.slow
def test_unlabeled_test_set_predicts_without_metrics_and_refuses_accuracy(
        tmp_path, load_tool, tool_error, demo_checkpoint, monkeypatch):
    """tools/test.py on an unlabeled list: AccMetric would count every clip
    as wrong, so DatasetCheckHook stops it; with test_evaluator=[] and
    --dump the predictions are written."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / 'videos'
    ann_file = Path(generate_video_dataset(str(root), 4, 0, size=32,
                                           speed=4))
    unlabeled = tmp_path / 'unlabeled.txt'
    unlabeled.write_text(''.join(
        line.split()[0] + '\n' for line in ann_file.read_text().splitlines()))
    config = config_testing_on(tmp_path, ann_file=str(unlabeled),
                         data_prefix=dict(video=str(root)),
                         allow_unlabeled=True)
    arguments = [str(config), str(demo_checkpoint), '--work-dir',
                 str(tmp_path / 'work')]
    assert tool_error('test', arguments) == (EXIT_USER_ERROR, (
        f'error: 4 clips of {unlabeled} have no label (first: line 1), and '
        'AccMetric would count them as wrong answers; label them, or run '
        'without metrics: --cfg-options test_evaluator=[] (tools/test.py '
        '--dump still saves the predictions)\n'))

    dump = tmp_path / 'predictions.pkl'
    load_tool('test').main(arguments + ['--dump', str(dump), '--cfg-options',
                           'test_evaluator=[]'])
    with open(dump, 'rb') as dumped:
        predictions = pickle.load(dumped)
    assert len(predictions) == 4
    assert all(p['pred_score'].shape == (4, ) for p in predictions)


@pytest.mark.slow
def test_test_tool_prints_an_annotation_error_in_one_line(
        tmp_path, tool_error, monkeypatch):
    """The dataset is built by the Runner, after the tool's checks: its
    error ends the tool in one line too."""
    monkeypatch.chdir(tmp_path)
    ann_file = tmp_path / 'list.txt'
    ann_file.write_text('0.mp4 1\n1.mp4\n')
    checkpoint = tmp_path / 'weights.pth'
    torch.save({'w': torch.zeros(1)}, checkpoint)  # never loaded
    config = config_testing_on(tmp_path, ann_file=str(ann_file),
                         data_prefix=dict(video=str(tmp_path)))
    code, err = tool_error('test', [config, checkpoint, '--work-dir',
                                    tmp_path / 'work'])
    assert code == EXIT_USER_ERROR
    assert err.startswith(f"error: line 2 of {ann_file} has no label: "
                          "'1.mp4'; ")
    assert err.count('\n') == 1


def test_runner_api_keeps_the_exception_type(tmp_path):
    """Without the tools' wrapper the error is the dataset's own type."""
    ann_file = tmp_path / 'list.txt'
    ann_file.write_text('')
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.test_dataloader.update(num_workers=0, persistent_workers=False)
    cfg.test_dataloader.dataset = dict(
        type='CheckedVideoDataset', ann_file=str(ann_file), pipeline=[],
        test_mode=True)
    with pytest.raises(AnnotationError, match='lists no clips'):
        Runner.from_cfg(cfg).test_dataloader
