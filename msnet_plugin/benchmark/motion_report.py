"""The synthetic motion benchmark's summary over seeds: results.json,
results.md (one row per model) and top1_vs_iteration.png.

Used by tools/motion_benchmark.py; runs come from
:func:`msnet_plugin.benchmark.motion.train_run`.
"""
import json
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..benchmarking import markdown_table

from .motion import (MAIN_MODELS, MODEL_BACKBONES, MODEL_DESCRIPTIONS,
                     benchmark_settings, seed_list, settings_differ)

#: What msnet_plugin.flops.model_complexity reports for a model.
COST_KEYS = ('params', 'flops', 'correlation_flops')
#: The top-1 whose first crossing the tables report.
TARGET_TOP1 = 0.9


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


def results_markdown(models: List[dict], args) -> str:
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
        'correlation included (msnet_plugin.flops).', ''
    ] + markdown_table(
        ('model', 'seeds', 'final top-1', f'iterations to top-1 {TARGET_TOP1}',
         f'mean val top-1 every {args.val_interval} iters', 'params',
         'GFLOPs'),
        ((model['description'], len(model['summary']['seeds']),
          format_top1(model['summary']), format_iters(model['summary']),
          ' '.join(f'{top1:.2f}' for top1 in model['summary']['curve_mean']),
          f"{model['params']:,}", f"{model['flops'] / 1e9:.3f}")
         for model in models))
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
        md_file.write(results_markdown(models, args))
    if plot:
        plot_curves(models, osp.join(args.out_dir, 'top1_vs_iteration.png'),
                    args)
    return models


def load_runs(folders: Sequence[str], args, required: bool = True
              ) -> Tuple[dict, dict]:
    """Runs (by model and seed; a later folder wins) and costs (by model)
    in the results.json of ``folders``. Refused, naming the file: a run made
    with settings other than ``args``', a file this tool did not write, and
    (with ``required``) a folder without results.json."""
    runs, costs = {}, {}
    for folder in folders:
        path = osp.join(folder, 'results.json')
        if not osp.exists(path):
            if required:
                raise SystemExit(f'no results.json in {folder}')
            continue
        try:
            with open(path) as results_file:
                report = json.load(results_file)
            found = {(r['model'], r['seed']): r for r in report['runs']}
            costs.update({m['model']: {key: m[key] for key in COST_KEYS}
                          for m in report['models']})
        except (ValueError, KeyError, TypeError) as error:
            raise SystemExit(
                f'{path} is not a results.json of this tool ({error!r}); '
                'move it away or choose another --out-dir') from error
        differing = sorted({key for run in found.values()
                            for key in settings_differ(run, args)})
        if differing:
            raise SystemExit(
                f'{path} holds runs made with other settings (they differ '
                f"in: {', '.join(differing)}); choose another --out-dir or "
                'move that folder away')
        runs.update(found)
    return runs, costs
