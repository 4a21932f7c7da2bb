"""Convert a checkpoint of the authors' MotionSqueeze code for MMAction2.

Usage: python tools/convert_authors_checkpoint.py SRC DST --config CONFIG
       [--cfg-options KEY=VALUE ...] [--debug]

SRC is a ``*.pth.tar`` that the authors' training scripts
(arunos728/MotionSqueeze) wrote; DST is written as mmengine saves
checkpoints, so that CONFIG's recognizer loads it with no missing or
unexpected key (``load_from=DST``, ``tools/test.py CONFIG DST``). The tool
refuses a checkpoint whose depth, MotionSqueeze channels or class count
differ from CONFIG's model, listing every difference, and names every key of
SRC it leaves unused. DST is written whole or not at all. The layout of both
is described in msnet_plugin/convert/authors_checkpoint.py. ``--cfg-options``
changes CONFIG as in tools/train.py, e.g. ``model.backbone.depth=18
model.cls_head.in_channels=512`` for the authors' ResNet-18 (pass the same
options to tools/test.py).
"""
import argparse
import os.path as osp

from mmengine.config import Config, DictAction

from msnet_plugin.cli import add_debug_argument, tool_main
from msnet_plugin.convert import convert_authors_checkpoint


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Convert the MotionSqueeze authors' checkpoint for "
        'MMAction2')
    parser.add_argument('src', help="the authors' checkpoint (*.pth.tar)")
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument('--config', required=True,
                        help='MMAction2 config whose model will load DST')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of CONFIG, key=value pairs')
    add_debug_argument(parser)
    return parser.parse_args(argv)


@tool_main
def main(argv=None):
    args = parse_args(argv)
    config = args.config
    if args.cfg_options and osp.isfile(config):
        config = Config.fromfile(config)
        config.merge_from_dict(args.cfg_options)
    conversion = convert_authors_checkpoint(args.src, args.dst, config)
    print(f'{args.src}: {conversion.network.describe()}')
    print(f'wrote {args.dst}: {len(conversion.source_keys)} tensors renamed '
          f'for {args.config}')
    if conversion.zero_counters:
        print(f'set {len(conversion.zero_counters)} BatchNorm '
              'num_batches_tracked counters absent from SRC to 0')
    print(f'unused keys of SRC ({len(conversion.unused)}):')
    for key in conversion.unused:
        print(f'  {key}')
    return conversion


if __name__ == '__main__':
    main()
