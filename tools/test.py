"""Test a checkpoint with mmengine's Runner, as MMAction2's tools/test.py does.

Usage: python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--dump X.pkl]
       [--cfg-options k=v ...] [--launcher L] [--debug]

The config (segment counts, the test data it names, the work directory) and
the checkpoint file are checked before anything is built; a mistake ends in
one line naming it (msnet_plugin/cli.py).
"""
import argparse
import os
import os.path as osp

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
from mmengine.config import Config, DictAction
from mmengine.runner import Runner
from mmaction.registry import RUNNERS
from msnet_plugin.checkpoints import (check_checkpoint_file,
                                      require_checkpoint_match)
from msnet_plugin.checks import (check_config_paths, check_frames_per_clip,
                                 check_segment_counts, check_writable_folder)
from msnet_plugin.cli import add_debug_argument, tool_main
from msnet_plugin.compat import (exit_skipping_finalization,
                                 prepare_launcher)
from msnet_plugin.errors import ConfigError
from msnet_plugin.launch import (check_launcher_environment,
                                 end_distributed_run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test an MSNet recognizer')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save metrics')
    parser.add_argument('--dump', type=str,
                        help='dump predictions to a .pkl file')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs')
    parser.add_argument('--show-dir', help='save visualizations here')
    parser.add_argument('--show', action='store_true',
                        help='show predictions in a window')
    parser.add_argument('--interval', type=int, default=1,
                        help='visualize every this many samples')
    parser.add_argument('--wait-time', type=float, default=2,
                        help='display time of every window (s)')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg, args):
    """Apply the command line to the config, as MMAction2's test.py does
    (``--cfg-options`` first, so that ``--dump`` adds to the evaluators
    they set, e.g. ``test_evaluator=[]``)."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.show or args.show_dir is not None:
        visualization = cfg.default_hooks.get('visualization')
        if visualization is None:
            raise ConfigError('--show/--show-dir need a VisualizationHook in '
                              'default_hooks.visualization')
        visualization.update(enable=True, show=args.show,
                             wait_time=args.wait_time,
                             out_dir=args.show_dir, interval=args.interval)
    if args.dump is not None:
        if not args.dump.endswith(('.pkl', '.pickle')):
            raise ConfigError(f'--dump must name a .pkl file, got '
                              f'{args.dump}')
        evaluators = cfg.test_evaluator
        evaluators = (list(evaluators) if isinstance(evaluators, (list, tuple))
                      else [evaluators])
        cfg.test_evaluator = evaluators + [
            dict(type='DumpResults', out_file_path=args.dump)]
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    return cfg


@tool_main
def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    counts = check_segment_counts(cfg.model)
    check_frames_per_clip(cfg, counts.get('model.backbone.num_segments'),
                          ['test'])
    check_config_paths(cfg, ['test'])
    check_writable_folder(cfg.work_dir)
    check_checkpoint_file(args.checkpoint, config=args.config)
    require_checkpoint_match(cfg)
    check_launcher_environment(args.launcher)
    prepare_launcher(args.launcher)
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    metrics = runner.test()
    if end_distributed_run():
        exit_skipping_finalization()  # workaround 7 (msnet_plugin/compat.py)
    return metrics


if __name__ == '__main__':
    main()
