"""Synthetic motion benchmark: TSN, TSM and MSNet (and MS ablations) on CPU.

Every model is built from the demo config (configs/msnet_r18_demo_synthetic.py)
with only the backbone changed, and trained with the same recipe, seed,
iterations and data through mmengine's Runner (iteration-based loop,
validation every ``--val-interval`` iterations). The data are generated
motion clips (msnet_plugin.datasets.SyntheticMotionDataset: a random texture,
new per clip, translating in one of 4 or 8 directions; no single frame holds
the label), written as mp4 and decoded by decord.

Writes to ``--out-dir``: ``results.json`` and ``results.md`` (top-1, top-5,
parameters, FLOPs, seconds per iteration, validation top-1 after each
interval) and ``top1_vs_iteration.png``; each model's Runner logs go to
``--out-dir/<model>/``. A model whose result is already in ``--out-dir``
with the same settings is not trained again (delete the folder, or pass
``--force``).

Usage:
    python tools/motion_benchmark.py [--models tsn tsm msnet ...]
        [--iters 160] [--val-interval 20] [--out-dir DIR]

FLOPs come from mmengine's ``get_model_complexity_info`` for one clip; it
does not count the correlation (a sum of products it has no handle for) nor
the soft-argmax, so MS variants are slightly undercounted.
"""
import argparse
import copy
import json
import os
import os.path as osp
import time

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
import torch
from mmengine.analysis import get_model_complexity_info
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from mmaction.registry import MODELS
from msnet_plugin.datasets import motion_flip_label_map

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
MAIN_MODELS = ('tsn', 'tsm', 'msnet')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train TSN, TSM and MSNet on synthetic motion (CPU)')
    parser.add_argument('--models', nargs='+', default=list(MODEL_BACKBONES),
                        choices=list(MODEL_BACKBONES),
                        help='models to train, in this order')
    parser.add_argument('--out-dir', default='work_dirs/motion_benchmark')
    parser.add_argument('--data-root', default='data/motion_benchmark',
                        help='where the train/val videos are generated')
    parser.add_argument('--iters', type=int, default=160,
                        help='training iterations of every model')
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
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-workers', type=int, default=0)
    parser.add_argument('--force', action='store_true',
                        help='retrain models whose results already exist')
    parser.add_argument(
        '--collect', nargs='+', metavar='DIR',
        help='train nothing: merge the results.json of these out-dirs (runs '
        'of other models with the same settings, e.g. in parallel) into '
        '--out-dir')
    args = parser.parse_args(argv)
    for name in ('iters', 'val_interval', 'batch_size', 'train_videos',
                 'val_videos'):
        if getattr(args, name) < 1:
            raise SystemExit(f'--{name.replace("_", "-")} must be >= 1, got '
                             f'{getattr(args, name)}')
    if args.iters % args.val_interval:
        raise SystemExit(f'--iters ({args.iters}) must be a multiple of '
                         f'--val-interval ({args.val_interval})')
    return args


def benchmark_settings(args) -> dict:
    """What makes two results comparable (everything but the model list)."""
    settings = dict(vars(args))
    for key in ('models', 'out_dir', 'force', 'num_workers', 'collect'):
        settings.pop(key)
    return settings


def build_config(args, model_name: str) -> Config:
    """The demo config with ``model_name``'s backbone and the benchmark's
    schedule, data and seed."""
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
    splits = dict(
        train=dict(data_root=osp.join(args.data_root, 'train'),
                   num_videos=args.train_videos, seed=args.seed),
        val=dict(data_root=osp.join(args.data_root, 'val'),
                 num_videos=args.val_videos, seed=args.seed + 1))
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
    cfg.randomness = dict(seed=args.seed)
    cfg.work_dir = osp.join(args.out_dir, model_name)
    return cfg


class ValCurveHook(Hook):
    """Records (training iteration, validation metrics) after each val."""

    priority = 'LOW'

    def __init__(self):
        self.curve = []

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.curve.append((runner.iter, dict(metrics or {})))


def model_cost(cfg: Config, args) -> dict:
    """Parameters and FLOPs (mmengine's counter) of one clip of ``cfg``."""
    model = MODELS.build(cfg.model)
    model.eval()
    params = sum(p.numel() for p in model.parameters())

    class ClipToScores(torch.nn.Module):
        """(1, T, 3, H, W) frames -> (1, num_classes) class scores."""

        def __init__(self, recognizer):
            super().__init__()
            self.recognizer = recognizer

        def forward(self, clip):
            return self.recognizer.extract_feat(clip, stage='head')[0]

    clip = torch.randn(1, args.num_segments, 3, args.size, args.size)
    analysis = get_model_complexity_info(
        ClipToScores(model), inputs=(clip, ), show_table=False,
        show_arch=False)
    return dict(params=params, flops=int(analysis['flops']))


def train_model(args, model_name: str) -> dict:
    """Train ``model_name``; its curve, final metrics and speed."""
    cfg = build_config(args, model_name)
    cost = model_cost(cfg, args)
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
        description=MODEL_DESCRIPTIONS[model_name],
        backbone=MODEL_BACKBONES[model_name],
        top1=float(final_metrics['acc/top1']),
        top5=float(final_metrics['acc/top5']),
        **cost,
        seconds_per_iter=float(steady.mean()),
        train_wall_seconds=wall_seconds,
        val_top1_curve=[[int(it), float(m['acc/top1'])]
                        for it, m in val_curve.curve],
        settings=benchmark_settings(args))


def markdown_table(results: list, args) -> str:
    """The results as a markdown table, one row per model."""
    chance = 1 / args.num_classes
    lines = [
        f'Synthetic motion, {args.num_classes} directions, {args.size}x'
        f'{args.size} px, {args.num_segments} frames, {args.speed} px/frame; '
        f'ResNet-{args.depth} from scratch, {args.iters} iterations of batch '
        f'{args.batch_size}, seed {args.seed}; {args.val_videos} validation '
        f'clips (chance top-1 {chance:.2f}). FLOPs: mmengine counter, one '
        'clip, correlation not counted.', '',
        '| model | top-1 | top-5 | val top-1 every {} iters | params | '
        'GFLOPs | s/iter |'.format(args.val_interval),
        '|---|---|---|---|---|---|---|'
    ]
    for result in results:
        curve = ' '.join(f'{top1:.2f}' for _, top1 in
                         result['val_top1_curve'])
        lines.append(
            f"| {result['description']} | {result['top1']:.3f} | "
            f"{result['top5']:.3f} | {curve} | {result['params']:,} | "
            f"{result['flops'] / 1e9:.3f} | "
            f"{result['seconds_per_iter']:.2f} |")
    return '\n'.join(lines) + '\n'


def plot_curves(results: list, path: str, args) -> None:
    """Validation top-1 against iteration, one line per model."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in results:
        iters, top1 = zip(*result['val_top1_curve'])
        main = result['model'] in MAIN_MODELS
        axes.plot(iters, top1, marker='o' if main else '.',
                  linewidth=2.2 if main else 1.0,
                  linestyle='-' if main else '--',
                  label=result['description'])
    axes.axhline(1 / args.num_classes, color='grey', linewidth=0.8,
                 linestyle=':', label='chance')
    axes.set_xlabel('training iteration')
    axes.set_ylabel('validation top-1')
    axes.set_ylim(0, 1.02)
    axes.set_title(f'Synthetic motion: {args.num_classes} directions, '
                   f'{args.speed} px/frame, {args.num_segments} frames of '
                   f'{args.size} px; ResNet-{args.depth}', fontsize=10)
    axes.legend(fontsize=7, loc='lower right')
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def load_previous(path: str) -> dict:
    """Results already in ``path``, by model name (empty if none)."""
    if not osp.exists(path):
        return {}
    with open(path) as results_file:
        return {r['model']: r for r in json.load(results_file)['results']}


def write_outputs(results: list, args) -> None:
    """results.json, results.md and top1_vs_iteration.png in out_dir."""
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'results.json'), 'w') as json_file:
        json.dump(dict(settings=benchmark_settings(args), results=results),
                  json_file, indent=1)
    with open(osp.join(args.out_dir, 'results.md'), 'w') as md_file:
        md_file.write(markdown_table(results, args))
    plot_curves(results, osp.join(args.out_dir, 'top1_vs_iteration.png'),
                args)


def collect(args) -> list:
    """Results of the runs in ``args.collect``, in ``args.models`` order;
    every run must have the settings of ``args``."""
    found = {}
    for run_dir in args.collect:
        path = osp.join(run_dir, 'results.json')
        if not osp.exists(path):
            raise SystemExit(f'--collect: no results.json in {run_dir}')
        for name, result in load_previous(path).items():
            if result['settings'] != benchmark_settings(args):
                raise SystemExit(
                    f'--collect: {name} in {run_dir} was run with settings '
                    f"{result['settings']}, not {benchmark_settings(args)}")
            found[name] = result
    return [found[name] for name in args.models if name in found]


def main(argv=None):
    args = parse_args(argv)
    if args.collect:
        results = collect(args)
        write_outputs(results, args)
        print(markdown_table(results, args))
        return
    # Results of other models with the same settings stay in the outputs.
    kept = {
        name: result
        for name, result in load_previous(
            osp.join(args.out_dir, 'results.json')).items()
        if result.get('settings') == benchmark_settings(args)
    }
    for model_name in args.models:
        if model_name not in kept or args.force:
            kept[model_name] = train_model(args, model_name)
        done = kept[model_name]
        write_outputs(
            [kept[name] for name in MODEL_BACKBONES if name in kept], args)
        print(f"[motion_benchmark] {model_name}: top-1 {done['top1']:.3f} "
              f"after {args.iters} iterations, curve "
              f"{done['val_top1_curve']}", flush=True)
    print(markdown_table([kept[name] for name in args.models], args))


if __name__ == '__main__':
    main()
