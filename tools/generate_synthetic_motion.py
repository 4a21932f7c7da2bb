"""Write a synthetic motion dataset: clips whose label is their motion.

Usage: python tools/generate_synthetic_motion.py --root DIR --num-videos N
       --seed S [--num-frames T] [--size PX] [--speed PX] [--num-classes 4|8]
       [--rawframes] [--debug]

Writes mp4 videos and ``annotations.txt`` (MMAction2's ``VideoDataset``
format), or with ``--rawframes`` JPEG folders and
``rawframe_annotations.txt`` (``RawframeDataset``, the Something-Something V1
layout), as ``SyntheticMotionDataset`` generates them
(msnet_plugin/datasets/synthetic_motion.py), and prints where.
"""
import argparse
import os.path as osp

from msnet_plugin.cli import add_debug_argument, tool_main
from msnet_plugin.datasets.synthetic_motion import (SUPPORTED_NUM_CLASSES,
                                                    generate_rawframe_dataset,
                                                    generate_video_dataset)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', required=True, help='dataset folder')
    parser.add_argument('--num-videos', type=int, required=True)
    parser.add_argument('--seed', type=int, required=True)
    parser.add_argument('--num-frames', type=int, default=8)
    parser.add_argument('--size', type=int, default=64)
    parser.add_argument('--speed', type=int, default=8)
    parser.add_argument(
        '--num-classes', type=int, default=4, choices=SUPPORTED_NUM_CLASSES)
    parser.add_argument(
        '--rawframes',
        action='store_true',
        help='write JPEG folders (Something-Something V1 layout) '
        'instead of mp4 videos')
    add_debug_argument(parser)
    return parser.parse_args(argv)


@tool_main
def main(argv=None):
    args = parse_args(argv)
    generate = (
        generate_rawframe_dataset if args.rawframes else generate_video_dataset)
    ann_path = generate(args.root, args.num_videos, args.seed,
                        args.num_frames, args.size, args.speed,
                        args.num_classes)
    print(f'{args.num_videos} clips in {osp.abspath(args.root)}, '
          f'annotation file {osp.abspath(ann_path)}')
    return ann_path


if __name__ == '__main__':
    main()
