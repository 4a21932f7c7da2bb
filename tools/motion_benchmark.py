"""Synthetic motion benchmark over seeds: TSN, TSM, MSNet and MS ablations.

Usage:
    python tools/motion_benchmark.py [--models tsn tsm msnet ...]
        [--seeds 3] [--iters 160] [--val-interval 20] [--out-dir DIR]
        [--log-dir DIR] [--force] [--collect DIR ...]

Trains every model of ``--models`` once per seed (``--first-seed`` ..
``--first-seed + --seeds - 1``) on generated motion clips, on ``--threads``
CPU threads; how, and what makes a run reproducible:
msnet_plugin/benchmark/motion.py. Writes to ``--out-dir``: ``results.json``
(every run, and per model the summary over the requested seeds),
``results.md`` (per model: mean and min-max over seeds of the final top-1
and of the iterations to top-1 0.9; parameters and FLOPs) and
``top1_vs_iteration.png``; each run's Runner logs go to
``--log-dir/<model>/seed<s>/`` (default: the out-dir). A run (model and
seed) already in ``--out-dir/results.json`` is not trained again
(``--force`` retrains); an out-dir whose runs were made with other settings
is refused. ``--collect`` trains nothing and merges the runs of other
out-dirs.
"""
import argparse
import os.path as osp

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
from msnet_plugin.benchmark import motion
from msnet_plugin.benchmark.motion_report import (load_runs,
                                                  results_markdown,
                                                  write_outputs)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train TSN, TSM and MSNet on synthetic motion (CPU), '
        'once per seed')
    parser.add_argument('--models', nargs='+',
                        default=list(motion.MODEL_BACKBONES),
                        choices=list(motion.MODEL_BACKBONES),
                        help='models to train, in this order')
    parser.add_argument('--seeds', type=int, default=3,
                        help='number of seeds: every model trains once with '
                        'each of first-seed .. first-seed + seeds - 1')
    parser.add_argument('--first-seed', type=int, default=0)
    parser.add_argument('--out-dir', default='work_dirs/motion_benchmark')
    parser.add_argument('--log-dir', default=None,
                        help='where the Runner logs go (default: --out-dir)')
    parser.add_argument('--data-root', default='data/motion_benchmark',
                        help='where the train/val videos are generated (one '
                        'folder per data setting and seed)')
    parser.add_argument('--iters', type=int, default=160,
                        help='training iterations of every run')
    parser.add_argument('--val-interval', type=int, default=20)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--lr', type=float, default=0.02)
    parser.add_argument('--depth', type=int, default=18)
    parser.add_argument('--num-segments', type=int, default=8)
    parser.add_argument('--size', type=int, default=32,
                        help='frame height and width in pixels')
    parser.add_argument('--speed', type=int, default=8,
                        help='motion in pixels per frame')
    parser.add_argument('--num-classes', type=int, default=4,
                        choices=(4, 8), help='motion directions')
    parser.add_argument('--train-videos', type=int, default=320)
    parser.add_argument('--val-videos', type=int, default=64)
    parser.add_argument('--num-workers', type=int, default=0)
    parser.add_argument(
        '--threads', type=int, default=1,
        help='torch CPU threads (torch.set_num_threads); the same count '
        'gives the same numbers, another count may differ in the last bits')
    parser.add_argument('--force', action='store_true',
                        help='retrain runs whose results already exist')
    parser.add_argument(
        '--collect', nargs='+', metavar='DIR',
        help='train nothing: merge the runs in the results.json of these '
        'out-dirs (same settings, e.g. run in parallel) into --out-dir')
    parser.set_defaults(demo_config=osp.join(
        REPO, 'configs', 'msnet_r18_demo_synthetic.py'))
    args = parser.parse_args(argv)
    for name in ('seeds', 'threads', 'iters', 'val_interval', 'batch_size',
                 'train_videos', 'val_videos'):
        if getattr(args, name) < 1:
            parser.error(f'--{name.replace("_", "-")} must be >= 1, got '
                         f'{getattr(args, name)}')
    if args.first_seed < 0:
        parser.error(f'--first-seed must be >= 0, got {args.first_seed}')
    if args.iters % args.val_interval:
        parser.error(f'--iters ({args.iters}) must be a multiple of '
                     f'--val-interval ({args.val_interval})')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.collect:
        runs, costs = load_runs(args.collect, args)
        models = write_outputs(list(runs.values()), costs, args)
        print(results_markdown(models, args))
        return
    # Runs already made with these settings stay (and are not trained
    # again without --force).
    runs, costs = load_runs([args.out_dir], args, required=False)
    for model_name in args.models:
        if model_name not in costs:
            costs[model_name] = motion.model_cost(args, model_name)
        for seed in motion.seed_list(args):
            if (model_name, seed) in runs and not args.force:
                continue
            run = runs[(model_name, seed)] = motion.train_run(
                args, model_name, seed)
            # The table after every run, the plot after every model.
            write_outputs(list(runs.values()), costs, args, plot=False)
            print(f'[motion_benchmark] {model_name} seed {seed}: top-1 '
                  f"{run['top1']:.3f} after {args.iters} iterations, curve "
                  f"{run['val_top1_curve']}", flush=True)
        models = write_outputs(list(runs.values()), costs, args)
    print(results_markdown([m for m in models if m['model'] in args.models],
                         args))


if __name__ == '__main__':
    main()
