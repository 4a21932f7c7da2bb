"""Check a prepared dataset against a config before a long run.

Usage: python tools/check_dataset.py CONFIG [--split train val test]
       [--workers N] [--cfg-options k=v ...] [--debug]

For each split's dataset in the config (VideoDataset or RawframeDataset
layouts), checks that the data folders and the annotation file exist, that
every line of the list parses (columns, integer frame counts and labels, a
label on every clip, no clip listed twice: the package's
``annotation_problems``), that every label lies in ``[0, num_classes)`` of
the config's head (``label_problems``), that every listed video exists and
decord decodes its first and last frame, or, for rawframes, that the clip
folder exists and its first and last frame images exist and decode. Prints
what is wrong, item by item, and exits with status 1 if anything is; status
0 and one OK line per split otherwise (2: the config itself is wrong).
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional


import msnet_plugin  # noqa: F401  (registers the plugin's classes)
import cv2
from mmaction.datasets import RawframeDataset, VideoDataset
from mmaction.registry import DATASETS
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from mmengine.utils import (track_iter_progress,
                            track_parallel_progress)
from msnet_plugin.checks import dataset_path_problems
from msnet_plugin.cli import add_debug_argument, tool_main
from msnet_plugin.datasets import (annotation_layout, annotation_problems,
                                   label_problems, raw_data_list)
from msnet_plugin.errors import AnnotationError, ConfigError

SPLITS = ('train', 'val', 'test')
# Problems printed per split before the rest is only counted.
MAX_LISTED = 50


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Check that every file a config lists exists and '
        'decodes, and that labels fit the head, before training')
    parser.add_argument('config', help='config file')
    parser.add_argument('--split', nargs='+', choices=SPLITS,
                        default=list(SPLITS), help='splits to check')
    parser.add_argument('--workers', type=int, default=1,
                        help='processes that decode in parallel')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def check_video(filename: str) -> Optional[str]:
    """None if decord opens ``filename`` and decodes its first and last
    frame, else what is wrong."""
    import decord
    if not osp.isfile(filename):
        return f'{filename}: video file not found'
    try:
        reader = decord.VideoReader(filename, num_threads=1)
        if len(reader) == 0:
            return f'{filename}: video has no frames'
        reader.get_batch([0, len(reader) - 1]).asnumpy()
    except Exception as error:  # decord raises its own DECORDError
        return f'{filename}: decord cannot decode it ({error})'
    return None


def check_rawframes(frame_dir: str, total_frames: int, start_index: int,
                    filename_tmpl: str) -> Optional[str]:
    """None if ``frame_dir`` holds readable first and last frame images
    (``total_frames >= 1``: the annotation list is checked first)."""
    if not osp.isdir(frame_dir):
        return f'{frame_dir}: frame folder not found'
    for index in (start_index, start_index + total_frames - 1):
        path = osp.join(frame_dir, filename_tmpl.format(index))
        if not osp.isfile(path):
            return (f'{path}: frame file not found (the annotation lists '
                    f'{total_frames} frames from {start_index})')
        if cv2.imread(path) is None:
            return f'{path}: cannot decode the image'
    return None


def check_item(task) -> List[str]:
    """Problems of the files of one annotation entry: ``task = (item, fmt,
    start_index, filename_tmpl)``."""
    item, fmt, start_index, filename_tmpl = task
    if fmt == 'video':
        problem = check_video(item['filename'])
    else:
        problem = check_rawframes(item['frame_dir'], item['total_frames'],
                                  start_index, filename_tmpl)
    return [problem] if problem else []


def dataset_format(dataset_cfg) -> str:
    """'video' or 'rawframes': the layout a dataset config reads."""
    dataset_type = dataset_cfg.get('type')
    dataset_class = DATASETS.get(dataset_type)
    if dataset_class is None:
        DATASETS.build(dataset_cfg)  # mmengine's KeyError names the type
    # Subclasses too, e.g. the plugin's CheckedRawframeDataset.
    if dataset_class is not None and issubclass(dataset_class,
                                                RawframeDataset):
        return 'rawframes'
    if dataset_class is not None and issubclass(dataset_class, VideoDataset):
        return 'video'
    raise ConfigError(f'check_dataset.py checks VideoDataset and '
                      f'RawframeDataset configs; this one uses {dataset_type}')


def check_split(cfg, split: str, workers: int) -> List[str]:
    """All problems of one split of the config's data."""
    loader = cfg.get(f'{split}_dataloader')
    if not loader:
        return []
    dataset_cfg = loader.dataset.copy()
    fmt = dataset_format(dataset_cfg)
    missing = dataset_path_problems(cfg, split)
    if missing:
        return [str(problem) for problem in missing]
    ann_file = dataset_cfg.get('ann_file')
    data_root = dataset_cfg.get('data_root')
    if ann_file and data_root and not osp.isabs(ann_file):
        ann_file = osp.join(data_root, ann_file)
    layout = annotation_layout(
        DATASETS.get(dataset_cfg.type), dataset_cfg.get('multi_class', False),
        dataset_cfg.get('with_offset', False),
        dataset_cfg.get('delimiter', ' '))
    if ann_file and osp.isfile(ann_file):
        problems = annotation_problems(
            ann_file, layout, dataset_cfg.get('allow_unlabeled', False))
        if problems:
            return problems
    dataset_cfg.pipeline = []
    if not dataset_cfg.get('multi_class', False):
        # Labels are compared with the head below, all of them; a dataset
        # given num_classes would stop at the first out of range.
        dataset_cfg.pop('num_classes', None)
    try:
        dataset = DATASETS.build(dataset_cfg)
    except AnnotationError as error:
        return [str(error)]
    entries = raw_data_list(dataset)
    ann_file = dataset.ann_file
    problems = label_problems(entries, cfg.model.cls_head.num_classes,
                              ann_file)
    tasks = [(entry, fmt, getattr(dataset, 'start_index', 1),
              getattr(dataset, 'filename_tmpl', '{:05}.jpg'))
             for entry in entries]
    print(f'{split}: checking {len(tasks)} clips listed in {ann_file}')
    if workers > 1:
        results = track_parallel_progress(check_item, tasks, workers)
    else:
        results = [check_item(task) for task in track_iter_progress(tasks)]
    return problems + [problem for found in results for problem in found]


@tool_main
def main(argv=None) -> int:
    """Check the data; return the exit status (0: all good, 1: problems)."""
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    status = 0
    for split in args.split:
        problems = check_split(cfg, split, args.workers)
        if not problems:
            if cfg.get(f'{split}_dataloader'):
                print(f'{split}: OK')
            continue
        status = 1
        print(f'{split}: {len(problems)} problem(s):')
        for problem in problems[:MAX_LISTED]:
            print(f'  {problem}')
        if len(problems) > MAX_LISTED:
            print(f'  ... and {len(problems) - MAX_LISTED} more')
    return status


if __name__ == '__main__':
    sys.exit(main())
