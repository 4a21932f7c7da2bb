"""Does each hand-written autograd Function earn its place?

Each of MotionSqueeze's hand-written autograd pieces is measured against the
plain alternative that would replace it, forward and backward, in time and
peak memory (CPU, or the device given):

- ``correlation``: :class:`~.models.fast_correlation.FastLocalCorrelation`
  (chunks of clips, saves only its inputs) against
  :func:`~.models.fast_correlation.strip_correlation` under plain autograd,
  on (B, C, S, S) maps, d = 7;
- ``soft_argmax``: :class:`~.models.soft_argmax.GaussianSoftArgmax` on the
  (B, P*P, S, S) correlation against the plain ops
  (:func:`~.models.soft_argmax.soft_argmax_last_axis`) on the same numbers
  with the window last, as ``strip_correlation`` gives them;
- ``tail``: MotionSqueeze(C) alone, a training step (forward, mean as the
  loss, backward) with its recomputed tail (:mod:`.models.recomputed_tail`,
  the default), with plain autograd (no recomputation) and with
  ``with_cp=True`` (the whole module recomputed).

Times are medians of rounds that run the variants of a case in turn in one
process (:func:`.benchmarking.alternating_medians`); memory is the growth
of peak RSS over one step in a fresh child process per variant on the CPU
(:func:`.benchmarking.peak_rss_growth_mb`), ``max_memory_allocated`` on
CUDA. :func:`compare_autograd_functions` returns, per case, each variant's
figures and its ratios to the hand-written one.
"""
import json
import os
import subprocess
import sys
from typing import Callable, Dict, Optional

import torch

from . import benchmarking as bench

#: The R50 case: 8 clips of 8 frames, 7 pairs each, layer2 at 224 px.
DEFAULT_CASE = dict(batch=56, channels=64, size=28, frames=8,
                    ms_channels=512)
#: The variants of each case; the first is the hand-written one.
VARIANTS = {
    'correlation': ('FastLocalCorrelation', 'strip_correlation'),
    'soft_argmax': ('GaussianSoftArgmax', 'plain ops, window last'),
    'tail': ('recomputed tail', 'plain autograd', 'with_cp'),
}
MAX_DISP, PATCH, SIGMA, TEMPERATURE = 7, 15, 5.0, 100.0


def variant_step(case_name: str, variant: str, case: dict,
                 device='cpu') -> Callable[[], object]:
    """One forward and backward of ``variant`` of ``case_name`` (see
    :data:`VARIANTS`) on fixed random inputs (the same for every variant).
    The step returns the gradients of the inputs, which it drops from the
    inputs (every step starts without them)."""
    from .models import MotionSqueeze
    from .models.fast_correlation import (FastLocalCorrelation,
                                          default_chunk_elements,
                                          strip_correlation)
    from .models.soft_argmax import (GaussianSoftArgmax,
                                     soft_argmax_last_axis)
    if variant not in VARIANTS.get(case_name, ()):
        raise ValueError(f'unknown variant {variant!r} of {case_name!r}; '
                         f'choose from {VARIANTS}')
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    batch, size = case['batch'], case['size']
    chunk = default_chunk_elements(device)

    def leaf(*shape, positive=False):
        value = torch.randn(shape, generator=generator)
        return (value.abs() if positive else value).to(device)

    if case_name == 'correlation':
        f1, f2 = (leaf(batch, case['channels'], size, size).requires_grad_()
                  for _ in range(2))
        grad = leaf(batch, PATCH * PATCH, size, size)
        kernel = ((lambda: FastLocalCorrelation.apply(f1, f2, MAX_DISP,
                                                      chunk))
                  if variant == 'FastLocalCorrelation' else
                  (lambda: strip_correlation(f1, f2, MAX_DISP)))

        def step():
            kernel().backward(grad)
            grads = f1.grad, f2.grad
            f1.grad = f2.grad = None
            return grads
        return step
    if case_name == 'soft_argmax':
        # A ReLU'd correlation of L2-normalised features lies in [0, 1].
        value = leaf(batch, size, size, PATCH * PATCH, positive=True)
        value = (value / value.max()).contiguous()
        grad = leaf(batch, 2, size, size)
        if variant == 'GaussianSoftArgmax':
            corr = value.permute(0, 3, 1, 2).contiguous().requires_grad_()

            def step():
                best = corr.detach().max(dim=1, keepdim=True)[1]
                GaussianSoftArgmax.apply(corr, best, PATCH, SIGMA,
                                         TEMPERATURE, chunk).backward(grad)
                # In the window-last layout, as the other variant's.
                grads = corr.grad.permute(0, 2, 3, 1),
                corr.grad = None
                return grads
        else:
            corr = value.requires_grad_()

            def step():
                soft_argmax_last_axis(corr, PATCH, TEMPERATURE,
                                      SIGMA)[0].backward(grad)
                grads = corr.grad,
                corr.grad = None
                return grads
        return step
    torch.manual_seed(0)
    module = MotionSqueeze(case['ms_channels'], num_segments=case['frames'],
                           with_cp=variant == 'with_cp').to(device).train()
    if variant == 'plain autograd':
        # The transformation as a plain nn.Sequential: no recomputation.
        # (In the instance's __dict__, which the method lookup reads first;
        # nn.Module's setattr would register a submodule instead.)
        object.__setattr__(module, '_transform', module.transform)
    frames = batch // (case['frames'] - 1) * case['frames']
    x = leaf(frames, case['ms_channels'], size, size).requires_grad_()

    def step():
        module(x).mean().backward()
        grads = x.grad,
        x.grad = None
        module.zero_grad(set_to_none=True)
        return grads
    return step


def _memory_in_child(case_name: str, variant: str, case: dict,
                     threads: Optional[int]) -> float:
    """Peak RSS growth (MiB) of one step, warm, in a fresh interpreter."""
    spec = json.dumps(dict(case_name=case_name, variant=variant, case=case,
                           threads=threads))
    code = ('import json, sys\n'
            'from msnet_plugin.benchmark_autograd import memory_child\n'
            'print(json.dumps(memory_child(json.loads(sys.argv[1]))))')
    result = subprocess.run(
        [sys.executable, '-c', code, spec], capture_output=True, text=True,
        env=dict(os.environ, PYTHONWARNINGS='ignore', **bench.MEMORY_ENV))
    if result.returncode != 0:
        raise RuntimeError(f'memory of {case_name}/{variant} failed:\n'
                           f'{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_child(spec: dict) -> float:
    """Run in a child started with :data:`.benchmarking.MEMORY_ENV`."""
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    step = variant_step(spec['case_name'], spec['variant'], spec['case'])
    step()  # warm-up
    return bench.peak_rss_growth_mb(step)


def compare_autograd_functions(cases=tuple(VARIANTS),
                               case: Optional[dict] = None,
                               rounds: int = 9,
                               device='cpu',
                               memory: bool = True,
                               threads: Optional[int] = None
                               ) -> Dict[str, Dict[str, dict]]:
    """Time (and peak memory) of every variant of each case.

    Args:
        cases: names of :data:`VARIANTS` to measure.
        case (dict, optional): sizes, as :data:`DEFAULT_CASE` (the default).
        rounds (int): timed rounds, after one untimed one.
        device: where to run; memory on 'cpu' needs Linux.
        memory (bool): measure peak memory too (CPU: a child per variant).
        threads (int, optional): torch threads of the memory children.

    Returns:
        dict: case -> variant -> ``seconds`` (median), ``times_s``,
        ``time_ratio`` (seconds over the hand-written variant's) and, with
        memory, ``peak_mb`` and ``memory_ratio``.
    """
    case = dict(DEFAULT_CASE, **(case or {}))
    device = torch.device(device)
    sync = ((lambda: torch.cuda.synchronize(device))
            if device.type == 'cuda' else (lambda: None))
    results = {}
    for case_name in cases:
        variants = VARIANTS[case_name]
        steps = {variant: variant_step(case_name, variant, case, device)
                 for variant in variants}
        times = bench.alternating_medians(steps, rounds, sync=sync)
        result = {variant: dict(seconds=times[variant]['median'],
                                times_s=times[variant]['times'])
                  for variant in variants}
        del steps
        for variant in variants if memory else ():
            if device.type == 'cuda':
                step = variant_step(case_name, variant, case, device)
                step()
                peak = bench.cuda_peak_mb(step, device)
            else:
                peak = _memory_in_child(case_name, variant, case, threads)
            result[variant]['peak_mb'] = peak
        first = result[variants[0]]
        for figures in result.values():
            figures['time_ratio'] = bench.ratio(figures['seconds'],
                                                first['seconds'])
            if memory:
                figures['memory_ratio'] = bench.ratio(figures['peak_mb'],
                                                      first['peak_mb'])
        results[case_name] = result
    return results


def autograd_markdown(results: Dict[str, Dict[str, dict]]) -> str:
    """The comparison as a markdown table, ratios to the hand-written
    variant (first row of each case)."""
    lines = ['| case | variant | time (s) | time ratio | peak memory (MiB) '
             '| memory ratio |', '|---|---|---|---|---|---|']
    for case_name, result in results.items():
        for variant, figures in result.items():
            peak = figures.get('peak_mb')
            lines.append(
                f"| {case_name} | {variant} | {figures['seconds']:.4f} | "
                f"{figures['time_ratio']:.3f} | "
                f"{'-' if peak is None else f'{peak:.1f}'} | "
                f"{figures.get('memory_ratio', float('nan')):.3f} |")
    return '\n'.join(lines) + '\n'
