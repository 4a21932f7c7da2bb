"""Train a recognizer with mmengine's Runner, as MMAction2's tools/train.py does.

Usage: python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
       [--seed N] [--deterministic] [--cfg-options k=v ...] [--launcher L]
"""
import argparse
import os
import os.path as osp

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner
from mmaction.registry import RUNNERS
from msnet_plugin.checks import check_segment_counts, require_checkpoint_match
from msnet_plugin.compat import prepare_launcher


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train an MSNet recognizer')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume', nargs='?', type=str, const='auto',
        help='resume from this checkpoint, or without a path from the '
        'latest checkpoint in the work directory')
    parser.add_argument('--amp', action='store_true',
                        help='automatic mixed precision: float16 on CUDA, '
                        'bfloat16 autocast on the CPU')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate checkpoints during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by actual / base batch size')
    parser.add_argument('--seed', type=int, default=None, help='random seed')
    parser.add_argument('--diff-rank-seed', action='store_true',
                        help='different seeds for different ranks')
    parser.add_argument('--deterministic', action='store_true',
                        help='deterministic options for the backends')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, key=value pairs')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def merge_args(cfg, args):
    """Apply the command line to the config, as MMAction2's train.py does."""
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        wrapper_type = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type not in ('OptimWrapper', 'AmpOptimWrapper',
                                'CPUAmpOptimWrapper'):
            raise SystemExit(f'--amp does not support optim_wrapper type '
                             f'{wrapper_type}')
        if torch.cuda.is_available():
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
        else:
            # mmengine's AmpOptimWrapper asserts an accelerator; on the CPU
            # the plugin's wrapper autocasts to bfloat16 (no loss scaling).
            cfg.optim_wrapper.type = 'CPUAmpOptimWrapper'
            cfg.optim_wrapper.pop('loss_scale', None)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    if cfg.get('randomness', None) is None:
        cfg.randomness = dict(seed=args.seed,
                              diff_rank_seed=args.diff_rank_seed,
                              deterministic=args.deterministic)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    check_segment_counts(cfg.model)
    if cfg.get('resume', False):
        require_checkpoint_match(cfg)
    prepare_launcher(args.launcher)
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    runner.train()


if __name__ == '__main__':
    main()
