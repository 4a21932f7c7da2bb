"""Synthetic motion benchmark over seeds: TSN, TSM, MSNet and MS ablations.

Every model is built from the demo config (configs/msnet_r18_demo_synthetic.py)
with only the backbone changed, and trained with the same recipe, iterations
and data through mmengine's Runner (iteration-based loop, validation every
``--val-interval`` iterations), once per seed. The data are generated motion
clips (msnet_plugin.datasets.SyntheticMotionDataset: a random texture, new per
clip, translating in one of 4 or 8 directions; no single frame holds the
label), written as mp4 and decoded by decord.

Seeds: ``--seeds N`` trains seeds ``--first-seed`` .. ``--first-seed + N - 1``
(default 3: seeds 0, 1, 2). Seed ``s`` sets everything random in a run: the
training clips (generator seed ``2 s``), the validation clips (``2 s + 1``),
the weight initialisation, the sampling order, flips and dropout.

Reproducibility: each run sets mmengine's ``randomness=dict(seed=s,
deterministic=True)``, and the global random states are saved before every
validation and restored after it, so validating (and how often) does not
change what training draws. torch runs on ``--threads`` CPU threads
(default 1). On one machine with the same thread count a run gives the same
losses and curve twice; see docs/motion_benchmark.md for what is
not covered.

Writes to ``--out-dir``: ``results.json`` (every run, and per model the
summary over the requested seeds), ``results.md`` (per model: mean and
min-max over seeds of the final top-1 and of the iterations needed to reach
top-1 0.9; parameters and FLOPs) and ``top1_vs_iteration.png`` (mean
validation curve per model, band from the lowest to the highest seed). Each
run's Runner logs go to ``--log-dir/<model>/seed<s>/`` (default: the
out-dir). A run (model and seed) already in ``--out-dir/results.json`` is
not trained again (pass ``--force`` to retrain); an out-dir whose runs were
made with other settings is refused.

Usage:
    python tools/motion_benchmark.py [--models tsn tsm msnet ...]
        [--seeds 3] [--iters 160] [--val-interval 20] [--out-dir DIR]

FLOPs are msnet_plugin.flops.model_complexity for one clip (the backbone,
as MMAction2's get_flops counts it, correlation included).
"""
import argparse
import copy
import json
import os
import os.path as osp
import time
from typing import List, Optional, Sequence

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from msnet_plugin.datasets import motion_flip_label_map
from msnet_plugin.flops import (build_recognizer, model_complexity,
                                recognizer_input_shape)
from msnet_plugin.hooks import capture_random_state, restore_random_state

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(REPO, 'configs', 'msnet_r18_demo_synthetic.py')

# Backbone of each benchmarked model. All are MMAction2's ResNetTSM (or the
# plugin's MSResNetTSM, which is ResNetTSM plus MS) with the same depth and
# head, from scratch; TSN is ResNetTSM without the shift.
_TSM = dict(type='ResNetTSM', pretrained2d=False)
_MSNET = dict(type='MSResNetTSM', ms_stages=(1, ), ms_cfg=dict())
MODEL_BACKBONES = {
    'tsn': dict(_TSM, is_shift=False),
    'tsm': _TSM,
    'msnet': _MSNET,
    'ms_tsn': dict(_MSNET, is_shift=False),
    'msnet_no_confidence': dict(_MSNET, ms_cfg=dict(use_confidence=False)),
    'msnet_plain_soft_argmax': dict(_MSNET, ms_cfg=dict(soft_argmax='plain')),
    'msnet_correlation_input': dict(
        _MSNET, ms_cfg=dict(motion_input='correlation')),
    'msnet_after_layer1': dict(_MSNET, ms_stages=(0, )),
}
MODEL_DESCRIPTIONS = {
    'tsn': 'TSN (ResNetTSM, no shift)',
    'tsm': 'TSM',
    'msnet': 'MSNet (TSM + MS after layer2)',
    'ms_tsn': 'MS on TSN (no shift)',
    'msnet_no_confidence': 'MSNet without confidence map',
    'msnet_plain_soft_argmax': 'MSNet, plain soft-argmax',
    'msnet_correlation_input': 'MSNet, correlation fed directly',
    'msnet_after_layer1': 'MSNet, MS after layer1',
}
MAIN_MODELS = ('tsn', 'tsm', 'msnet', 'ms_tsn')
#: What msnet_plugin.flops.model_complexity reports for a model.
COST_KEYS = ('params', 'flops', 'correlation_flops')
#: The top-1 whose first crossing the tables report.
TARGET_TOP1 = 0.9


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train TSN, TSM and MSNet on synthetic motion (CPU), '
        'once per seed')
    parser.add_argument('--models', nargs='+', default=list(MODEL_BACKBONES),
                        choices=list(MODEL_BACKBONES),
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
    args = parser.parse_args(argv)
    for name in ('seeds', 'threads', 'iters', 'val_interval', 'batch_size',
                 'train_videos', 'val_videos'):
        if getattr(args, name) < 1:
            raise SystemExit(f'--{name.replace("_", "-")} must be >= 1, got '
                             f'{getattr(args, name)}')
    if args.first_seed < 0:
        raise SystemExit(f'--first-seed must be >= 0, got {args.first_seed}')
    if args.iters % args.val_interval:
        raise SystemExit(f'--iters ({args.iters}) must be a multiple of '
                         f'--val-interval ({args.val_interval})')
    return args


def seed_list(args) -> List[int]:
    """The seeds of this invocation."""
    return list(range(args.first_seed, args.first_seed + args.seeds))


def benchmark_settings(args) -> dict:
    """What makes two runs of a model and seed comparable (everything but
    the model list, the seeds and where things are written)."""
    settings = dict(vars(args))
    for key in ('models', 'seeds', 'first_seed', 'out_dir', 'log_dir',
                'data_root', 'force', 'num_workers', 'threads', 'collect'):
        settings.pop(key)
    return settings


def data_roots(args, seed: int) -> dict:
    """Train and val folders of ``seed``'s clips: one folder per data
    setting and seed, so runs of other tasks or seeds never regenerate it."""
    task = (f'{args.num_classes}dir_{args.num_segments}f_{args.size}px_'
            f'{args.speed}pxf_seed{seed}')
    return {split: osp.join(args.data_root, task, split)
            for split in ('train', 'val')}


def build_config(args, model_name: str, seed: int) -> Config:
    """The demo config with ``model_name``'s backbone and the benchmark's
    schedule, data (``seed``'s clips) and seed."""
    cfg = Config.fromfile(DEMO_CONFIG)
    backbone = copy.deepcopy(MODEL_BACKBONES[model_name])
    backbone.update(depth=args.depth, pretrained=None,
                    num_segments=args.num_segments)
    cfg.model.backbone = backbone
    cfg.model.cls_head.num_classes = args.num_classes
    cfg.model.cls_head.num_segments = args.num_segments
    cfg.model.cls_head.in_channels = 512 if args.depth < 50 else 2048

    data = dict(num_frames=args.num_segments, size=args.size,
                speed=args.speed, num_classes=args.num_classes)
    roots = data_roots(args, seed)
    splits = dict(
        train=dict(data_root=roots['train'], num_videos=args.train_videos,
                   seed=2 * seed),
        val=dict(data_root=roots['val'], num_videos=args.val_videos,
                 seed=2 * seed + 1))
    for split in ('train', 'val'):
        loader = cfg[f'{split}_dataloader']
        loader.batch_size = args.batch_size
        loader.num_workers = args.num_workers
        loader.persistent_workers = args.num_workers > 0
        loader.dataset.update(data, **splits[split])
        for transform in loader.dataset.pipeline:
            if transform.type == 'SampleFrames':
                transform.num_clips = args.num_segments
            if transform.type == 'Flip':
                transform.flip_label_map = motion_flip_label_map(
                    args.num_classes)
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.test_dataloader = cfg.val_dataloader

    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=args.iters,
                         val_interval=args.val_interval)
    warmup = max(1, args.iters // 10)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=warmup),
        dict(type='CosineAnnealingLR', T_max=args.iters - warmup, eta_min=0,
             by_epoch=False, begin=warmup, end=args.iters)
    ]
    cfg.optim_wrapper.optimizer.lr = args.lr
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=10)
    # Results are what this tool keeps; no checkpoints are needed.
    cfg.default_hooks.checkpoint = None
    cfg.log_processor = dict(by_epoch=False)
    cfg.randomness = dict(seed=seed, deterministic=True)
    cfg.work_dir = osp.join(args.log_dir or args.out_dir, model_name,
                            f'seed{seed}')
    return cfg


class ValCurveHook(Hook):
    """Records (training iteration, validation metrics) after each
    validation, and keeps validation out of training's random numbers.

    The global random states (Python, numpy, torch) are captured before each
    validation and restored after it: building the validation iterator
    draws a base seed from torch's generator, which would otherwise shift
    training's dropout masks by the number of validations so far.
    """

    priority = 'LOW'

    def __init__(self):
        self.curve = []
        self._train_random_state = None

    def before_val(self, runner) -> None:
        self._train_random_state = capture_random_state()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.curve.append((runner.iter, dict(metrics or {})))

    def after_val(self, runner) -> None:
        if self._train_random_state is not None:
            restore_random_state(self._train_random_state)
            self._train_random_state = None


def model_cost(args, model_name: str) -> dict:
    """Parameters and FLOPs of one clip of ``model_name`` (the plugin's
    counter: backbone, correlation included)."""
    model = build_recognizer(build_config(args, model_name, 0))
    shape = recognizer_input_shape(model, args.num_segments, args.size,
                                   args.size)
    return model_complexity(model, shape)


def train_run(args, model_name: str, seed: int) -> dict:
    """Train ``model_name`` with ``seed``: its curve and final metrics."""
    cfg = build_config(args, model_name, seed)
    torch.set_num_threads(args.threads)
    runner = Runner.from_cfg(cfg)
    val_curve = ValCurveHook()
    runner.register_hook(val_curve)
    start = time.perf_counter()
    runner.train()
    wall_seconds = time.perf_counter() - start
    iteration_times = runner.message_hub.get_scalar('train/time').data[0]
    # The first iterations include start-up (workers, allocator); skip them.
    steady = iteration_times[min(5, len(iteration_times) - 1):]
    final_metrics = val_curve.curve[-1][1]
    return dict(
        model=model_name,
        seed=seed,
        top1=float(final_metrics['acc/top1']),
        top5=float(final_metrics['acc/top5']),
        val_top1_curve=[[int(it), float(m['acc/top1'])]
                        for it, m in val_curve.curve],
        # The training loss of every iteration: two runs of one seed must
        # give the same list (tests/test_motion_benchmark.py).
        train_loss=[float(loss) for loss in
                    runner.message_hub.get_scalar('train/loss').data[0]],
        # Wall-clock figures of this machine at this time: not a speed
        # comparison unless the runs were made alone on an idle machine.
        seconds_per_iter=float(np.mean(steady)),
        train_wall_seconds=wall_seconds,
        threads=args.threads,
        settings=benchmark_settings(args))


def iterations_to_reach(curve: Sequence[Sequence[float]],
                        target: float = TARGET_TOP1) -> Optional[int]:
    """First validated iteration whose top-1 is >= ``target``.

    Args:
        curve: ``[[iteration, top1], ...]`` in iteration order.
        target: the top-1 to reach.

    Returns:
        int or None: the iteration, or None if no validation reached it.
    """
    for iteration, top1 in curve:
        if top1 >= target:
            return int(iteration)
    return None


def summarize_runs(runs: Sequence[dict], target: float = TARGET_TOP1) -> dict:
    """Mean and range over seeds of one model's runs.

    Args:
        runs: run dicts (``seed``, ``top1``, ``top5``, ``val_top1_curve``);
            all curves must have the same iterations.
        target: the top-1 of ``iters_to_target``.

    Returns:
        dict: ``seeds``; ``top1_mean``, ``top1_min``, ``top1_max`` and
        ``top5_mean`` of the final validation; ``iters_to_target`` (per
        seed, None where not reached), ``reached`` (how many seeds reached
        it), ``iters_mean`` (None unless every seed reached it: a seed that
        never got there has no iteration to average), ``iters_min`` and
        ``iters_max`` (over the seeds that reached it, None if none did);
        ``curve_iters`` and ``curve_mean``, ``curve_min``, ``curve_max``
        (top-1 at each validated iteration).
    """
    if not runs:
        raise ValueError('summarize_runs needs at least one run')
    curve_iters = [it for it, _ in runs[0]['val_top1_curve']]
    for run in runs:
        if [it for it, _ in run['val_top1_curve']] != curve_iters:
            raise ValueError(
                f"seed {run['seed']} was validated at iterations "
                f"{[it for it, _ in run['val_top1_curve']]}, seed "
                f"{runs[0]['seed']} at {curve_iters}")
    top1 = np.array([run['top1'] for run in runs])
    curves = np.array([[v for _, v in run['val_top1_curve']]
                       for run in runs])
    iters = [iterations_to_reach(run['val_top1_curve'], target)
             for run in runs]
    reached = [it for it in iters if it is not None]
    return dict(
        seeds=[run['seed'] for run in runs],
        top1_mean=float(top1.mean()),
        top1_min=float(top1.min()),
        top1_max=float(top1.max()),
        top5_mean=float(np.mean([run['top5'] for run in runs])),
        target_top1=target,
        iters_to_target=iters,
        reached=len(reached),
        iters_mean=(float(np.mean(reached))
                    if len(reached) == len(runs) else None),
        iters_min=min(reached) if reached else None,
        iters_max=max(reached) if reached else None,
        curve_iters=curve_iters,
        curve_mean=curves.mean(axis=0).tolist(),
        curve_min=curves.min(axis=0).tolist(),
        curve_max=curves.max(axis=0).tolist())


def format_top1(summary: dict) -> str:
    """``mean (min-max)`` of the final top-1."""
    return (f"{summary['top1_mean']:.3f} ({summary['top1_min']:.3f}-"
            f"{summary['top1_max']:.3f})")


def format_iters(summary: dict) -> str:
    """Iterations to the target: ``mean (min-max)`` when every seed got
    there; otherwise how many did not and the range of those that did."""
    total = len(summary['seeds'])
    if summary['reached'] == total:
        return (f"{summary['iters_mean']:.0f} ({summary['iters_min']}-"
                f"{summary['iters_max']})")
    if summary['reached'] == 0:
        return f'not reached ({total} of {total} seeds)'
    return (f"not reached in {total - summary['reached']} of {total} seeds "
            f"({summary['iters_min']}-{summary['iters_max']} in the others)")


def markdown_table(models: List[dict], args) -> str:
    """One row per model: the summary over seeds, parameters, FLOPs."""
    chance = 1 / args.num_classes
    seeds = ', '.join(str(s) for s in seed_list(args))
    lines = [
        f'Synthetic motion, {args.num_classes} directions, {args.size}x'
        f'{args.size} px, {args.num_segments} frames, {args.speed} px/frame; '
        f'ResNet-{args.depth} from scratch, {args.iters} iterations of batch '
        f'{args.batch_size}; seeds {seeds} (each seed: its own training and '
        f'validation clips and initialisation); {args.val_videos} validation '
        f'clips (chance top-1 {chance:.2f}), validated every '
        f'{args.val_interval} iterations. Mean (min-max) over seeds. '
        f'Iterations to {TARGET_TOP1}: first validation at or above it; no '
        'mean when a seed never reached it. GFLOPs: one clip, backbone, '
        'correlation included (msnet_plugin.flops).', '',
        f'| model | seeds | final top-1 | iterations to top-1 {TARGET_TOP1} '
        '| mean val top-1 every {} iters | params | GFLOPs |'.format(
            args.val_interval),
        '|---|---|---|---|---|---|---|'
    ]
    for model in models:
        summary = model['summary']
        curve = ' '.join(f'{top1:.2f}' for top1 in summary['curve_mean'])
        lines.append(
            f"| {model['description']} | {len(summary['seeds'])} | "
            f'{format_top1(summary)} | {format_iters(summary)} | {curve} | '
            f"{model['params']:,} | {model['flops'] / 1e9:.3f} |")
    return '\n'.join(lines) + '\n'


def plot_curves(models: List[dict], path: str, args) -> None:
    """Mean validation top-1 against iteration per model, with a band from
    the lowest to the highest seed."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for model in models:
        summary = model['summary']
        main = model['model'] in MAIN_MODELS
        label = model['description']
        if len(summary['seeds']) < args.seeds:
            label += f" ({len(summary['seeds'])} of {args.seeds} seeds)"
        line, = axes.plot(summary['curve_iters'], summary['curve_mean'],
                          marker='o' if main else '.',
                          linewidth=2.2 if main else 1.0,
                          linestyle='-' if main else '--', label=label)
        axes.fill_between(summary['curve_iters'], summary['curve_min'],
                          summary['curve_max'], color=line.get_color(),
                          alpha=0.15 if main else 0.07, linewidth=0)
    axes.axhline(1 / args.num_classes, color='grey', linewidth=0.8,
                 linestyle=':', label='chance')
    axes.set_xlabel('training iteration')
    axes.set_ylabel('validation top-1 (mean; band: min-max over seeds)')
    axes.set_ylim(0, 1.02)
    axes.set_title(f'Synthetic motion: {args.num_classes} directions, '
                   f'{args.speed} px/frame, {args.num_segments} frames of '
                   f'{args.size} px; ResNet-{args.depth}; '
                   f'{args.seeds} seeds', fontsize=10)
    axes.legend(fontsize=7, loc='lower right')
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def load_report(path: str) -> dict:
    """``results.json`` at ``path`` (empty report if there is none)."""
    if not osp.exists(path):
        return dict(costs={}, runs=[])
    try:
        with open(path) as results_file:
            report = json.load(results_file)
        costs = {m['model']: {key: m[key] for key in COST_KEYS}
                 for m in report['models']}
        return dict(costs=costs,
                    runs=list(report['runs']))
    except (ValueError, KeyError, TypeError) as error:
        raise SystemExit(
            f'{path} is not a results.json of this tool ({error!r}); move '
            'it away or choose another --out-dir') from error


def model_reports(runs: List[dict], costs: dict, args) -> List[dict]:
    """Per model (in MODEL_BACKBONES order), the summary over the requested
    seeds of its runs; models without any such run are left out."""
    seeds = seed_list(args)
    models = []
    for name in MODEL_BACKBONES:
        chosen = sorted((r for r in runs
                         if r['model'] == name and r['seed'] in seeds),
                        key=lambda r: r['seed'])
        if not chosen:
            continue
        models.append(dict(
            model=name, description=MODEL_DESCRIPTIONS[name],
            backbone=MODEL_BACKBONES[name], **costs[name],
            summary=summarize_runs(chosen)))
    return models


def write_outputs(runs: List[dict], costs: dict, args,
                  plot: bool = True) -> List[dict]:
    """results.json (all runs, summaries), results.md and (with ``plot``)
    the plot; returns the per-model reports."""
    os.makedirs(args.out_dir, exist_ok=True)
    runs = sorted(runs, key=lambda r: (list(MODEL_BACKBONES).index(
        r['model']), r['seed']))
    models = model_reports(runs, costs, args)
    with open(osp.join(args.out_dir, 'results.json'), 'w') as json_file:
        json.dump(dict(settings=benchmark_settings(args),
                       seeds=seed_list(args), target_top1=TARGET_TOP1,
                       models=models, runs=runs), json_file, indent=1)
    with open(osp.join(args.out_dir, 'results.md'), 'w') as md_file:
        md_file.write(markdown_table(models, args))
    if plot:
        plot_curves(models, osp.join(args.out_dir, 'top1_vs_iteration.png'),
                    args)
    return models


def collect(args) -> tuple:
    """Runs and costs of the out-dirs in ``args.collect``; every run must
    have the settings of ``args``."""
    runs, costs = {}, {}
    for run_dir in args.collect:
        path = osp.join(run_dir, 'results.json')
        if not osp.exists(path):
            raise SystemExit(f'--collect: no results.json in {run_dir}')
        report = load_report(path)
        for run in report['runs']:
            if run['settings'] != benchmark_settings(args):
                raise SystemExit(
                    f"--collect: {run['model']} seed {run['seed']} in "
                    f"{run_dir} was run with settings {run['settings']}, "
                    f'not {benchmark_settings(args)}')
            runs[(run['model'], run['seed'])] = run
        costs.update(report['costs'])
    return list(runs.values()), costs


def main(argv=None):
    args = parse_args(argv)
    if args.collect:
        runs, costs = collect(args)
        print(markdown_table(write_outputs(runs, costs, args), args))
        return
    results_path = osp.join(args.out_dir, 'results.json')
    previous = load_report(results_path)
    settings = benchmark_settings(args)
    differing = sorted({
        key for run in previous['runs']
        for key in set(run['settings']) | set(settings)
        if run['settings'].get(key) != settings.get(key)})
    if differing:
        raise SystemExit(
            f'{results_path} holds runs made with other settings (they '
            f"differ in: {', '.join(differing)}); choose another --out-dir "
            'or move that folder away')
    # Runs of other models or seeds stay.
    runs = {(r['model'], r['seed']): r for r in previous['runs']}
    costs = dict(previous['costs'])
    for model_name in args.models:
        if model_name not in costs:
            costs[model_name] = model_cost(args, model_name)
        for seed in seed_list(args):
            if (model_name, seed) in runs and not args.force:
                continue
            run = runs[(model_name, seed)] = train_run(args, model_name, seed)
            # The table after every run, the plot after every model.
            write_outputs(list(runs.values()), costs, args, plot=False)
            print(f'[motion_benchmark] {model_name} seed {seed}: top-1 '
                  f"{run['top1']:.3f} after {args.iters} iterations, curve "
                  f"{run['val_top1_curve']}", flush=True)
        models = write_outputs(list(runs.values()), costs, args)
    print(markdown_table([m for m in models if m['model'] in args.models],
                         args))


if __name__ == '__main__':
    main()
