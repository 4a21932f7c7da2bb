"""Params and FLOPs of a config's model, the MotionSqueeze correlation counted.

Mirrors MMAction2's tools/analysis_tools/get_flops.py (mmengine's counter on
``extract_feat``, one multiply-add = one FLOP), with two differences: the
plugin's correlation is counted (msnet_plugin/flops.py), and the number of
frames is explicit.

Usage: python tools/get_flops.py CONFIG [--num-frames T] [--shape H W]
       [--cfg-options k=v ...] [--debug]
"""
import argparse

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
from mmengine.config import Config, DictAction

from msnet_plugin.cli import add_debug_argument, tool_main
from msnet_plugin.flops import (build_recognizer, model_complexity,  # noqa
                                recognizer_input_shape)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Params and FLOPs of a recognizer config')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--num-frames', type=int, default=None,
                        help='frames per clip (default: the backbone\'s '
                        'num_segments, else 8)')
    parser.add_argument('--shape', type=int, nargs='+', default=[224, 224],
                        help='frame size: H W, or one number for H = W')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if len(args.shape) == 1:
        args.shape = args.shape * 2
    if len(args.shape) != 2:
        parser.error(f'--shape takes H W or one size, got {args.shape}')
    return args


@tool_main
def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    num_frames = args.num_frames or cfg.model.get('backbone', {}).get(
        'num_segments', 8)
    model = build_recognizer(cfg, num_frames)
    input_shape = recognizer_input_shape(model, num_frames, *args.shape)
    info = model_complexity(model, input_shape)
    line = '=' * 30
    print(f'{line}\nInput shape: {input_shape}\n'
          f'Flops: {info["flops"] / 1e9:.3f} G '
          f'(correlation {info["correlation_flops"] / 1e9:.3f} G)\n'
          f'Params: {info["params"] / 1e6:.3f} M\n{line}')
    return info


if __name__ == '__main__':
    main()
