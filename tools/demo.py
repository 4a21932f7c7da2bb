"""Recognise the action of one video: top-5 labels, optionally drawn on it.

Usage: python tools/demo.py CONFIG CHECKPOINT VIDEO [--label-map FILE]
       [--out-filename OUT.mp4|OUT.gif] [--target-resolution W H]
       [--fps F] [--device cpu] [--debug]

Runs MMAction2's ``init_recognizer`` and ``inference_recognizer`` with the
config's test pipeline; with ``--out-filename``, MMAction2's
``ActionVisualizer`` draws the predictions on every frame, written as mp4
(OpenCV) or GIF (Pillow).
"""
import argparse
import os.path as osp

import torch
from mmaction.apis import inference_recognizer
from mmaction.structures import ActionDataSample
from mmaction.visualization import ActionVisualizer
from mmengine.dataset import Compose
from mmengine.structures import LabelData

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
from msnet_plugin.checkpoints import check_checkpoint_file
from msnet_plugin.cli import add_debug_argument, tool_main
from msnet_plugin.datasets import write_video
from msnet_plugin.visualization import save_gif
from msnet_plugin.visualization.inference import (class_names, load_recognizer,
                                                  load_video, read_frames,
                                                  top_k)

MIN_SHORT_SIDE = 224  # smaller videos are enlarged so the text is legible


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Top-5 labels of a video with an MSNet recognizer')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('video', help='video file')
    parser.add_argument('--label-map', help='class names, one per line')
    parser.add_argument('--out-filename',
                        help='write the video with the labels drawn on it '
                        '(.mp4 or .gif)')
    parser.add_argument('--target-resolution', type=int, nargs=2,
                        metavar=('W', 'H'),
                        help='size of the output video; -1 keeps the aspect '
                        'ratio (default: short side at least 224)')
    parser.add_argument('--fps', type=float, default=8,
                        help='frame rate of the output video')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not osp.isfile(args.video):
        parser.error(f'video not found: {args.video}')
    if args.out_filename is not None and not args.out_filename.endswith(
            ('.mp4', '.gif')):
        parser.error(f'--out-filename must end in .mp4 or .gif, got '
                     f'{args.out_filename}')
    if args.fps <= 0:
        parser.error('--fps must be positive')
    return args


def draw_predictions(frames, scores, indices, names, target_resolution):
    """RGB frames (T, H, W, 3) with the predictions, by ActionVisualizer.

    ``indices`` are the top classes, best first; ``scores`` all classes'.
    """
    visualizer = ActionVisualizer()
    visualizer.dataset_meta = dict(classes=names)
    data_sample = ActionDataSample()
    # ActionVisualizer (mmaction2 1.2.0) reads predictions from
    # ``pred_labels.item`` (class indices) and ``pred_labels.score``.
    data_sample.pred_labels = LabelData(
        item=torch.tensor(indices), score=torch.tensor(scores))
    if target_resolution is None:
        short_side = min(frames.shape[1:3])
        if short_side < MIN_SHORT_SIDE:
            target_resolution = (-1, MIN_SHORT_SIDE)
    return visualizer.add_datasample(
        'demo', list(frames), data_sample, draw_gt=False,
        target_resolution=target_resolution)


@tool_main
def main(argv=None):
    args = parse_args(argv)
    check_checkpoint_file(args.checkpoint, config=args.config)
    model = load_recognizer(args.config, args.checkpoint, args.device)
    result = inference_recognizer(model, load_video(model.cfg, args.video),
                                  test_pipeline=Compose([]))
    scores = result.pred_score.tolist()
    names = class_names(args.label_map, model.cfg, len(scores))
    top5 = top_k(scores, 5)
    print('The top-5 labels with their scores are:')
    for index in top5:
        print(f'{names[index]}: {scores[index]:.4f}')
    if args.out_filename is not None:
        frames = read_frames(args.video)
        drawn = draw_predictions(frames, scores, top5, names,
                                 args.target_resolution)
        if args.out_filename.endswith('.gif'):
            save_gif(args.out_filename, list(drawn), args.fps)
        else:
            write_video(args.out_filename, drawn, fps=args.fps)
        print(f'wrote {args.out_filename}')
    return [(names[index], scores[index]) for index in top5]


if __name__ == '__main__':
    main()
