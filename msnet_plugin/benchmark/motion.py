"""Synthetic motion benchmark: every model trained once per seed.

Used by tools/motion_benchmark.py. Every model is built from the demo config
(``args.demo_config``) with only the backbone changed, and trained with the
same recipe, iterations and data through mmengine's Runner
(iteration-based loop, validation every ``args.val_interval`` iterations),
once per seed. The data are generated motion clips
(:class:`~msnet_plugin.datasets.SyntheticMotionDataset`: a random texture,
new per clip, translating in one of 4 or 8 directions; no single frame holds
the label), written as mp4 and decoded by decord.

Seed ``s`` sets everything random in a run: the training clips (generator
seed ``2 s``), the validation clips (``2 s + 1``), the weight
initialisation, the sampling order, flips and dropout. Each run sets
mmengine's ``randomness=dict(seed=s, deterministic=True)``, and
:class:`ValCurveHook` saves the global random states before every
validation and restores them after it, so validating (and how often) does
not change what training draws. On one machine with the same thread count a
run gives the same losses and curve twice; docs/motion_benchmark.md says
what is not covered. FLOPs are :func:`msnet_plugin.flops.model_complexity`
for one clip (the backbone, correlation included).

``args`` below is the tool's parsed arguments.
"""
import copy
import os.path as osp
import time
from typing import List

import numpy as np
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from ..datasets import motion_flip_label_map
from ..flops import build_recognizer, model_complexity, recognizer_input_shape
from ..random_state import capture_random_state, restore_random_state


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
#: The models the plot draws bold.
MAIN_MODELS = ('tsn', 'tsm', 'msnet', 'ms_tsn')


def seed_list(args) -> List[int]:
    """The seeds of this invocation."""
    return list(range(args.first_seed, args.first_seed + args.seeds))


def benchmark_settings(args) -> dict:
    """What makes two runs of a model and seed comparable (everything but
    the model list, the seeds and where things are written)."""
    settings = dict(vars(args))
    for key in ('models', 'seeds', 'first_seed', 'out_dir', 'log_dir',
                'data_root', 'force', 'num_workers', 'threads', 'collect',
                'demo_config'):
        settings.pop(key)
    return settings


def settings_differ(run: dict, args) -> List[str]:
    """The settings in which ``run`` differs from ``args`` (none: the run
    is comparable)."""
    settings = benchmark_settings(args)
    return sorted(key for key in set(run['settings']) | set(settings)
                  if run['settings'].get(key) != settings.get(key))


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
    cfg = Config.fromfile(args.demo_config)
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
