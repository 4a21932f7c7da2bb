"""Draw what MotionSqueeze sees in a video: displacement and confidence maps.

Usage: python tools/visualize_motion.py CONFIG CHECKPOINT VIDEO --out DIR
       [--module NAME] [--full-saturation CELLS] [--scale N] [--fps F]
       [--label-map FILE] [--device cpu] [--compare-flow] [--debug]

The video goes through the config's test pipeline and the recognizer, as in
tools/demo.py; the features that reach the MotionSqueeze module are read
with a forward pre-hook. For each clip the backbone sees, DIR gets
``<video>_clip<k>.png`` (rows: RGB frames, displacement coloured as optical
flow with a colour-wheel legend, confidence) and ``<video>_clip<k>.gif``
(the same, animated). CHECKPOINT ``none`` draws a randomly initialised
model's maps. ``--compare-flow`` also writes ``<video>_clip<k>_flow.png``
(MS displacement above OpenCV's Farneback flow on the same grid and colour
wheel) and prints how well they agree (msnet_plugin/visualization/
flow_comparison.py).
"""
import argparse
import os
import os.path as osp

import numpy as np
from mmaction.apis import inference_recognizer
from mmengine.dataset import Compose

from msnet_plugin.checkpoints import check_checkpoint_file
from msnet_plugin.cli import add_debug_argument, tool_main
from msnet_plugin.visualization import (MotionRecorder, compare_with_flow,
                                        flow_comparison_grid,
                                        motion_gif_frames, motion_grid,
                                        save_gif, save_png, split_clips)
from msnet_plugin.visualization.inference import (
    class_names, load_recognizer, load_video, top_k)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw the displacement and confidence maps of MSNet')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        'checkpoint', help="checkpoint file, or 'none' for random weights")
    parser.add_argument('video', help='video file')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--module', default=None,
                        help='MotionSqueeze module to read, e.g. '
                        'backbone.ms_layer2 (default: the first)')
    parser.add_argument('--full-saturation', type=float, default=1.0,
                        help='displacement in feature cells drawn with full '
                        'colour (1 cell = 8 px after layer2)')
    parser.add_argument('--scale', type=int, default=0,
                        help='enlarge frames by this integer factor '
                        '(default: to at least 128 px)')
    parser.add_argument('--fps', type=float, default=4, help='GIF frame rate')
    parser.add_argument('--label-map', help='class names, one per line')
    parser.add_argument('--device', default='cpu', help='e.g. cpu, cuda:0')
    parser.add_argument('--compare-flow', action='store_true',
                        help="also draw OpenCV's Farneback optical flow on "
                        'the MS feature grid and print how well it agrees')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.checkpoint.lower() == 'none':
        args.checkpoint = None
    if args.scale < 0 or args.fps <= 0 or args.full_saturation <= 0:
        parser.error('--scale must be >= 0, --fps and --full-saturation > 0')
    if not osp.isfile(args.video):
        parser.error(f'video not found: {args.video}')
    return args


def enlarge(frames: np.ndarray, scale: int) -> np.ndarray:
    """(T, H, W, 3) -> (T, H * scale, W * scale, 3), nearest neighbour."""
    if scale == 0:
        scale = max(1, -(-128 // min(frames.shape[1:3])))
    return frames.repeat(scale, axis=1).repeat(scale, axis=2)


@tool_main
def main(argv=None):
    args = parse_args(argv)
    if args.checkpoint is None:
        print('WARNING: no checkpoint, drawing the motion of RANDOM weights. '
              'An untrained MS still matches the features of shifted '
              'frames, but only a trained one shows what the network '
              'learned.')
    else:
        check_checkpoint_file(args.checkpoint, config=args.config)
    model = load_recognizer(args.config, args.checkpoint, args.device)
    data = load_video(model.cfg, args.video)
    with MotionRecorder(model, args.module) as recorder:
        result = inference_recognizer(model, data, test_pipeline=Compose([]))
        displacement, confidence = recorder.motion()
    scores = result.pred_score.tolist()
    names = class_names(args.label_map, model.cfg, len(scores))
    [best] = top_k(scores, 1)
    weights = 'random weights' if args.checkpoint is None else 'trained'
    os.makedirs(args.out, exist_ok=True)
    stem = osp.splitext(osp.basename(args.video))[0]
    [clips] = split_clips([data['inputs']], displacement, confidence,
                          recorder.module.num_segments)
    for index, (frames, clip_disp, clip_conf) in enumerate(clips):
        flow = compare_with_flow(frames, clip_disp) if args.compare_flow \
            else None
        frames = enlarge(frames, args.scale)
        title = (f'{stem} clip {index}, {recorder.module_name} '
                 f'({weights}): predicted {names[best]} ({scores[best]:.2f})')
        png = osp.join(args.out, f'{stem}_clip{index}.png')
        gif = osp.join(args.out, f'{stem}_clip{index}.gif')
        save_png(png, motion_grid(frames, clip_disp, clip_conf,
                                  args.full_saturation, title))
        save_gif(gif, motion_gif_frames(frames, clip_disp, clip_conf,
                                        args.full_saturation), args.fps)
        print(f'wrote {png} and {gif}')
        if flow is not None:
            flow_png = osp.join(args.out, f'{stem}_clip{index}_flow.png')
            save_png(flow_png, flow_comparison_grid(
                frames, clip_disp, flow.flow, args.full_saturation,
                f'{stem} clip {index}, {recorder.module_name} ({weights}) '
                'vs Farneback flow'))
            print(f'clip {index}, MS vs Farneback flow: {flow.agreement}')
            print(f'wrote {flow_png}')
    return clips


if __name__ == '__main__':
    main()
