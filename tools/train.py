"""Train a recognizer with mmengine's Runner, as MMAction2's tools/train.py does.

Usage: python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
       [--seed N] [--deterministic] [--cfg-options k=v ...] [--launcher L]
       [--debug]

Before anything is built, the config is checked (segment counts, the files
and folders it names, the work directory, the checkpoint it loads or
resumes); a mistake ends in one line naming it (msnet_plugin/cli.py). A work
directory another training is using is refused
(msnet_plugin/work_dir_lock.py).
Ctrl-C, or a disk that fills during a save, keeps the last complete
checkpoint and says how to resume (exit status 130 and 2).
"""
import argparse
import errno
import os
import os.path as osp
import zipfile

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner
from mmengine.runner.checkpoint import find_latest_checkpoint
from mmaction.registry import RUNNERS
from msnet_plugin.checkpoints import (check_checkpoint_file,
                                      require_checkpoint_match)
from msnet_plugin.checks import (check_config_paths, check_frames_per_clip,
                                 check_segment_counts, check_writable_folder)
from msnet_plugin.cli import (EXIT_INTERRUPTED, ToolStopped,
                              add_debug_argument, describe_os_error,
                              tool_main)
from msnet_plugin.compat import (exit_skipping_finalization,
                                 prepare_launcher)
from msnet_plugin.errors import ConfigError
from msnet_plugin.launch import (check_launcher_environment,
                                 end_distributed_run, launcher_rank)
from msnet_plugin.work_dir_lock import lock_work_dir


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
    add_debug_argument(parser)
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
            raise ConfigError(f'--amp does not support optim_wrapper type '
                              f'{wrapper_type}; use OptimWrapper')
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


def check_config(cfg, args) -> None:
    """Check what the run needs before anything is built: segment counts,
    the data and weights the config names, the work directory, and the
    checkpoint it loads or resumes from."""
    counts = check_segment_counts(cfg.model)
    resume = bool(cfg.get('resume', False))
    load_from = cfg.get('load_from', None)
    if resume and load_from:  # --resume PATH
        check_checkpoint_file(load_from, resume=True, config=args.config,
                              key='checkpoint to resume from')
    splits = ['train'] + (['val'] if cfg.get('val_cfg') else [])
    check_frames_per_clip(cfg, counts.get('model.backbone.num_segments'),
                          splits)
    check_config_paths(cfg, splits, weights=True)
    check_writable_folder(cfg.work_dir)
    if load_from and not resume:
        check_checkpoint_file(load_from, config=args.config,
                              key='load_from checkpoint')
    elif resume and not load_from:
        latest = find_latest_checkpoint(cfg.work_dir)
        if latest:
            check_checkpoint_file(
                latest, resume=True, config=args.config,
                key=f'checkpoint to resume from (named by {cfg.work_dir}/'
                'last_checkpoint)')
            check_not_finished(latest, cfg)
    if resume:
        if load_from:
            check_not_finished(load_from, cfg)
        require_checkpoint_match(cfg)


def check_not_finished(checkpoint: str, cfg) -> None:
    """Refuse to resume from the checkpoint of the last epoch of an
    epoch-based training: mmengine would train nothing and end quietly."""
    train_cfg = cfg.get('train_cfg', None) or {}
    max_epochs = train_cfg.get('max_epochs')
    if not isinstance(max_epochs, int) or train_cfg.get(
            'type', 'EpochBasedTrainLoop') != 'EpochBasedTrainLoop':
        return
    meta = torch.load(checkpoint, map_location='cpu', weights_only=True,
                      mmap=zipfile.is_zipfile(checkpoint)).get('meta') or {}
    epoch = meta.get('epoch')
    if isinstance(epoch, int) and epoch >= max_epochs:
        raise ConfigError(
            f'training already ended: {checkpoint} is the checkpoint of epoch '
            f'{epoch} and train_cfg.max_epochs is {max_epochs}, so --resume '
            'has nothing to train; to train longer, resume with '
            f'--cfg-options train_cfg.max_epochs=N (N > {epoch}), or start '
            'a new training with another --work-dir')


def resume_advice(cfg, args, runner) -> str:
    """Where the run stopped, the checkpoint it keeps and the command that
    resumes it."""
    latest = find_latest_checkpoint(cfg.work_dir)
    command = f'python tools/train.py {args.config}'
    if args.work_dir:
        command += f' --work-dir {args.work_dir}'
    others = ' with your other options' if any(
        (args.cfg_options, args.amp, args.seed is not None,
         args.launcher != 'none', args.no_validate)) else ''
    loop = getattr(runner, '_train_loop', None)
    where = (f'in epoch {runner.epoch + 1} (after {runner.iter} iterations)'
             if loop is not None and not isinstance(loop, dict) else
             'before training')
    if latest and osp.isfile(latest):
        return (f'{where}. The last complete checkpoint, {latest}, is '
                f'intact; resume with: {command} --resume{others}')
    return (f'{where}, before any checkpoint was saved; start again with: '
            f'{command}{others}')


@tool_main
def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    check_config(cfg, args)
    check_launcher_environment(args.launcher)
    prepare_launcher(args.launcher)
    # One training per work directory (rank 0 of a distributed run locks).
    lock = lock_work_dir(cfg.work_dir) if launcher_rank(
        args.launcher) == 0 else None
    try:
        closed_process_group = train(cfg, args)
    finally:
        if lock is not None:
            lock.release()
    if closed_process_group:
        exit_skipping_finalization()  # workaround 7 (msnet_plugin/compat.py)


def train(cfg, args):
    runner = (Runner.from_cfg(cfg)
              if 'runner_type' not in cfg else RUNNERS.build(cfg))
    try:
        runner.train()
        return end_distributed_run()
    except KeyboardInterrupt:
        raise ToolStopped('training interrupted (Ctrl-C) ' +
                          resume_advice(cfg, args, runner),
                          EXIT_INTERRUPTED) from None
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise ToolStopped(f'{describe_os_error(error)}. Training stopped '
                          + resume_advice(cfg, args, runner)) from error


if __name__ == '__main__':
    main()
