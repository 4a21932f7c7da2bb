"""Label a long video with a sliding window: top-k per window as JSON.

Usage: python tools/long_video_demo.py CONFIG CHECKPOINT VIDEO OUT.json
       [--window 2s|64] [--stride 1s|32] [--batch-size 8] [--top-k 5]
       [--label-map FILE] [--out-filename OUT.mp4]
       [--motion-window I --motion-out OUT.png] [--device cpu] [--debug]

Each window (a span of the video, in seconds with an ``s`` suffix or in
frames) goes through the config's test pipeline as if it were a whole
video: its frame sampling (e.g. 8 segments over the window), decoding,
resize, crops. Windows go to the model ``--batch-size`` at a time, with a
progress bar when there is more than one batch. ``--out-filename`` writes
the video with the top-1 label of the window centred nearest each frame;
``--motion-window I`` draws the MotionSqueeze maps of window I.
"""
import argparse
import json
import os
import os.path as osp
import sys

import cv2
import decord
import numpy as np
from mmengine.dataset import Compose
from mmengine.utils import ProgressBar
from mmaction.structures import ActionDataSample

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
from msnet_plugin.checkpoints import check_checkpoint_file
from msnet_plugin.cli import ToolStopped, add_debug_argument, tool_main
from msnet_plugin.datasets import write_video
from msnet_plugin.datasets.bad_sample_guard import cannot_load_message
from msnet_plugin.errors import BadSampleError
from msnet_plugin.visualization import motion_grid, save_png
from msnet_plugin.visualization.inference import (class_names, load_recognizer,
                                                  read_frames, top_k,
                                                  video_pipeline)
from msnet_plugin.visualization.motion_recorder import (MotionRecorder,
                                                        split_clips)


def span(text):
    """'2s' -> (2.0, 'seconds'); '64' -> (64, 'frames')."""
    try:
        if text.endswith('s'):
            value, unit = float(text[:-1]), 'seconds'
        else:
            value, unit = int(text), 'frames'
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'{text!r} is neither seconds (e.g. 2s) nor frames (e.g. '
            '64)') from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f'{text!r} must be positive')
    return value, unit


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Per-window top-k labels of a long video')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('video', help='video file')
    parser.add_argument('out_json', help='where to write the windows (JSON)')
    parser.add_argument('--window', type=span, default=span('2s'),
                        help='window length: seconds (2s) or frames (64)')
    parser.add_argument('--stride', type=span, default=span('1s'),
                        help='step between window starts: seconds or '
                        'frames')
    parser.add_argument('--batch-size', type=int, default=8,
                        help='windows per forward pass')
    parser.add_argument('--top-k', type=int, default=5)
    parser.add_argument('--label-map', help='class names, one per line')
    parser.add_argument('--out-filename',
                        help='write the video with each frame\'s label (mp4)')
    parser.add_argument('--motion-window', type=int,
                        help='index of the window whose motion maps to draw')
    parser.add_argument('--motion-out', help='PNG of those motion maps')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if not osp.isfile(args.video):
        parser.error(f'video not found: {args.video}')
    if args.batch_size < 1 or args.top_k < 1:
        parser.error('--batch-size and --top-k must be at least 1')
    if (args.motion_window is None) != (args.motion_out is None):
        parser.error('--motion-window and --motion-out go together')
    if args.out_filename is not None and not args.out_filename.endswith(
            '.mp4'):
        parser.error(f'--out-filename must end in .mp4, got '
                     f'{args.out_filename}')
    return args


def to_frames(value_unit, fps):
    value, unit = value_unit
    return max(1, round(value * fps)) if unit == 'seconds' else value


def window_starts(num_frames, window, stride):
    """First frame of every window; the last window ends at the last frame
    (a video shorter than a window is one window)."""
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] + window < num_frames:
        starts.append(num_frames - window)
    return starts


def window_pipeline(cfg):
    """The config's test pipeline without its Init step: it runs on a
    video reader opened once, one window at a time."""
    steps = video_pipeline(cfg).transforms
    if steps and type(steps[0]).__name__.endswith('Init'):
        steps = steps[1:]
    return Compose(steps)


def label_windows(model, reader, video, starts, window, batch_size):
    """Per window, (inputs, pred_score) of the model, batch by batch."""
    pipeline = window_pipeline(model.cfg)
    progress = ProgressBar(len(starts), file=sys.stdout) if len(
        starts) > batch_size else None
    results = []
    for first in range(0, len(starts), batch_size):
        batch = []
        for start in starts[first:first + batch_size]:
            try:
                batch.append(pipeline(dict(
                    video_reader=reader, filename=video, label=-1,
                    start_index=start,
                    total_frames=min(window, len(reader) - start),
                    modality='RGB')))
            except Exception as error:  # decord's and the transforms'
                raise BadSampleError(cannot_load_message(
                    f'{video} (frames {start}..{start + window - 1})',
                    error)) from error
        predictions = model.test_step(dict(
            inputs=[item['inputs'] for item in batch],
            data_samples=[item['data_samples'] for item in batch]))
        for item, prediction in zip(batch, predictions):
            results.append((item['inputs'], prediction.pred_score.cpu()))
        if progress is not None:
            for _ in batch:
                progress.update()
    if progress is not None:
        print()
    return results


def labelled_video(path, video, fps, starts, window, labels):
    """The video with, on each frame, the label of the window whose centre
    is nearest."""
    frames = read_frames(video).copy()
    centres = np.array(starts) + window / 2
    for index, frame in enumerate(frames):
        text = labels[int(np.abs(centres - index).argmin())]
        scale = max(frame.shape[0] / 480, 0.4)
        cv2.putText(frame, text, (8, int(24 * scale) + 4),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                    max(1, int(2 * scale)), cv2.LINE_AA)
    even = frames[:, :frames.shape[1] // 2 * 2, :frames.shape[2] // 2 * 2]
    write_video(path, np.ascontiguousarray(even), fps=fps)


@tool_main
def main(argv=None):
    args = parse_args(argv)
    check_checkpoint_file(args.checkpoint, config=args.config)
    model = load_recognizer(args.config, args.checkpoint, args.device)
    try:
        reader = decord.VideoReader(args.video)
    except Exception as error:  # decord raises its own DECORDError
        raise BadSampleError(cannot_load_message(args.video, error)) from error
    fps = reader.get_avg_fps() or 30.0
    window = to_frames(args.window, fps)
    stride = to_frames(args.stride, fps)
    starts = window_starts(len(reader), window, stride)
    if args.motion_window is not None and not (
            0 <= args.motion_window < len(starts)):
        raise ToolStopped(f'--motion-window {args.motion_window}: the video '
                         f'has windows 0..{len(starts) - 1}')
    results = label_windows(model, reader, args.video, starts, window,
                            args.batch_size)
    names = class_names(args.label_map, model.cfg, len(results[0][1]))
    windows = []
    for start, (_, scores) in zip(starts, results):
        end = min(start + window, len(reader)) - 1
        windows.append(dict(
            start_frame=start, end_frame=end,
            start_s=round(start / fps, 3), end_s=round((end + 1) / fps, 3),
            top_k=[dict(label=index, name=names[index],
                        score=float(scores[index]))
                   for index in top_k(scores.tolist(), args.top_k)]))
    os.makedirs(osp.dirname(osp.abspath(args.out_json)), exist_ok=True)
    with open(args.out_json, 'w') as out:
        json.dump(dict(video=args.video, fps=fps, num_frames=len(reader),
                       window_frames=window, stride_frames=stride,
                       windows=windows), out, indent=1)
    print(f'wrote {len(windows)} windows to {args.out_json}')
    if args.out_filename is not None:
        labelled_video(args.out_filename, args.video, fps, starts, window,
                       [item['top_k'][0]['name'] for item in windows])
        print(f'wrote {args.out_filename}')
    if args.motion_window is not None:
        draw_motion(model, results[args.motion_window][0], args)
        print(f'wrote {args.motion_out}')
    return windows


def draw_motion(model, inputs, args):
    """Motion maps of one window's first clip, as tools/visualize_motion.py
    draws them."""
    with MotionRecorder(model) as recorder:
        model.test_step(dict(inputs=[inputs],
                             data_samples=[ActionDataSample()]))
        displacement, confidence = recorder.motion()
    [clips] = split_clips([inputs], displacement, confidence,
                          recorder.module.num_segments)
    frames, clip_disp, clip_conf = clips[0]
    save_png(args.motion_out, motion_grid(
        frames, clip_disp, clip_conf, 1.0,
        f'window {args.motion_window}, {recorder.module_name}'))


if __name__ == '__main__':
    main()
