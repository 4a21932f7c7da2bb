"""Check a prepared dataset against a config before a long run.

Usage: python tools/check_dataset.py CONFIG [--split train val test]
       [--workers N] [--cfg-options k=v ...]

For each split's dataset in the config (VideoDataset or RawframeDataset
layouts), checks that the annotation file exists and parses, that every
listed video exists and decord decodes its first and last frame, or, for
rawframes, that the clip folder exists and its first and last frame images
exist and decode, and that every label lies in ``[0, num_classes)`` of the
config's head. Prints what is wrong, item by item, and exits with status 1
if anything is; status 0 and one OK line per split otherwise.
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
    """None if ``frame_dir`` holds readable first and last frame images."""
    if not osp.isdir(frame_dir):
        return f'{frame_dir}: frame folder not found'
    if total_frames < 1:
        return f'{frame_dir}: annotation lists {total_frames} frames'
    for index in (start_index, start_index + total_frames - 1):
        path = osp.join(frame_dir, filename_tmpl.format(index))
        if not osp.isfile(path):
            return (f'{path}: frame file not found (the annotation lists '
                    f'{total_frames} frames from {start_index})')
        if cv2.imread(path) is None:
            return f'{path}: cannot decode the image'
    return None


def check_item(task) -> List[str]:
    """Problems of one annotation entry: ``task = (item, fmt, num_classes,
    start_index, filename_tmpl)``."""
    item, fmt, num_classes, start_index, filename_tmpl = task
    problems = []
    if fmt == 'video':
        problem = check_video(item['filename'])
        name = item['filename']
    else:
        problem = check_rawframes(item['frame_dir'], item['total_frames'],
                                  start_index, filename_tmpl)
        name = item['frame_dir']
    if problem:
        problems.append(problem)
    labels = item['label']
    labels = labels if isinstance(labels, (list, tuple)) else [labels]
    for label in labels:
        if not 0 <= int(label) < num_classes:
            problems.append(f'{name}: label {label} is outside [0, '
                            f'{num_classes}) (num_classes of the head)')
    return problems


def dataset_format(dataset_cfg) -> str:
    """'video' or 'rawframes': the layout a dataset config reads."""
    dataset_type = dataset_cfg.get('type')
    dataset_class = DATASETS.get(dataset_type)
    # Subclasses too, e.g. the plugin's CheckedRawframeDataset.
    if dataset_class is not None and issubclass(dataset_class,
                                                RawframeDataset):
        return 'rawframes'
    if dataset_class is not None and issubclass(dataset_class, VideoDataset):
        return 'video'
    raise SystemExit(f'check_dataset.py checks VideoDataset and '
                     f'RawframeDataset configs; this one uses {dataset_type}')


def check_split(cfg, split: str, workers: int) -> List[str]:
    """All problems of one split of the config's data."""
    loader = cfg.get(f'{split}_dataloader')
    if not loader:
        return []
    dataset_cfg = loader.dataset.copy()
    fmt = dataset_format(dataset_cfg)
    ann_file = dataset_cfg.get('ann_file')
    if not osp.isfile(ann_file):
        return [f'{ann_file}: annotation file not found ({split} split)']
    dataset_cfg.pipeline = []
    try:
        dataset = DATASETS.build(dataset_cfg)
    except Exception as error:
        return [f'{ann_file}: cannot parse it as a {dataset_cfg.type} '
                f'annotation file ({type(error).__name__}: {error})']
    num_classes = cfg.model.cls_head.num_classes
    tasks = [(dataset.get_data_info(i), fmt, num_classes,
              getattr(dataset, 'start_index', 1),
              getattr(dataset, 'filename_tmpl', '{:05}.jpg'))
             for i in range(len(dataset))]
    if not tasks:
        return [f'{ann_file}: the annotation file lists no clips']
    print(f'{split}: checking {len(tasks)} clips listed in {ann_file}')
    if workers > 1:
        results = track_parallel_progress(check_item, tasks, workers)
    else:
        results = [check_item(task) for task in track_iter_progress(tasks)]
    return [problem for problems in results for problem in problems]


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
