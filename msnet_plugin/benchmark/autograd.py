"""Does each hand-written autograd Function earn its place?

Each of MotionSqueeze's hand-written autograd pieces is measured against the
plain alternative that would replace it, forward and backward, in time and
peak memory (CPU, or the device given):

- ``correlation``: ``FastLocalCorrelation`` (chunks of clips, saves only
  its inputs) against ``strip_correlation`` under plain autograd (both in
  msnet_plugin/models/fast_correlation.py), on (B, C, S, S) maps, d = 7;
- ``soft_argmax``: ``GaussianSoftArgmax`` on the (B, P*P, S, S)
  correlation against the plain ops ``soft_argmax_last_axis`` (both in
  msnet_plugin/models/soft_argmax.py) on the same numbers with the window
  last, as ``strip_correlation`` gives them;
- ``tail``: MotionSqueeze(C) alone, a training step (forward, mean as the
  loss, backward) with its recomputed tail
  (msnet_plugin/models/recomputed_tail.py, the default), with plain
  autograd (no recomputation) and with ``with_cp=True`` (the whole module
  recomputed).

Times are medians of rounds that run the variants of a case in turn in one
process (``benchmarking.alternating_medians``); memory is the growth of
peak RSS over one step in a fresh child process per variant on the CPU
(``benchmarking.peak_rss_growth_mb``), ``max_memory_allocated`` on CUDA,
and on the CPU also the memory held from the end of the forward to the
backward (what the rest of a network carries to its own peak; a module's
own peak alone can hide that saving). :func:`compare_autograd_functions`
returns, per case, each variant's figures and its ratios to the
hand-written one.
"""
from typing import Callable, Dict, Optional

import torch

from .. import benchmarking as bench
from .parts import in_child

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
                 device='cpu',
                 forward_only: bool = False) -> Callable[[], object]:
    """One forward and backward of ``variant`` of ``case_name`` (see
    :data:`VARIANTS`) on fixed random inputs (the same for every variant).
    The step returns the gradients of the inputs, which it drops from the
    inputs (every step starts without them). With ``forward_only``, the
    callable runs the forward alone and returns its output (whatever
    autograd keeps for backward stays alive with it)."""
    from ..models import MotionSqueeze
    from ..models.fast_correlation import (FastLocalCorrelation,
                                          default_chunk_elements,
                                          strip_correlation)
    from ..models.soft_argmax import (GaussianSoftArgmax,
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
        leaves = tuple(
            leaf(batch, case['channels'], size, size).requires_grad_()
            for _ in range(2))
        grad = leaf(batch, PATCH * PATCH, size, size)
        if variant == 'FastLocalCorrelation':
            def forward():
                return FastLocalCorrelation.apply(*leaves, MAX_DISP, chunk)
        else:
            def forward():
                return strip_correlation(*leaves, MAX_DISP)
    elif case_name == 'soft_argmax':
        # A ReLU'd correlation of L2-normalised features lies in [0, 1].
        value = leaf(batch, size, size, PATCH * PATCH, positive=True)
        value = (value / value.max()).contiguous()
        grad = leaf(batch, 2, size, size)
        if variant == 'GaussianSoftArgmax':
            # Its gradient is compared in the window-last layout.
            corr = value.permute(0, 3, 1, 2).contiguous()
            leaves = corr.permute(0, 2, 3, 1).requires_grad_(),

            def forward():
                best = corr.max(dim=1, keepdim=True)[1]
                return GaussianSoftArgmax.apply(
                    leaves[0].permute(0, 3, 1, 2), best, PATCH, SIGMA,
                    TEMPERATURE, chunk)[0]
        else:
            leaves = value.requires_grad_(),

            def forward():
                return soft_argmax_last_axis(leaves[0], PATCH, TEMPERATURE,
                                             SIGMA)[0]
    else:
        torch.manual_seed(0)
        module = MotionSqueeze(case['ms_channels'],
                               num_segments=case['frames'],
                               with_cp=variant == 'with_cp').to(device)
        module.train()
        if variant == 'plain autograd':
            # The module's own blocks, none recomputed. (In the instance's
            # __dict__, which the method lookup reads first.)
            object.__setattr__(module, '_recomputes_tail', lambda: False)
        frames = batch // (case['frames'] - 1) * case['frames']
        leaves = leaf(frames, case['ms_channels'], size,
                      size).requires_grad_(),
        # The gradient of the mean, as a loss would give it.
        grad = torch.full_like(leaves[0], 1 / leaves[0].numel())

        def forward():
            return module(leaves[0])
    if forward_only:
        return forward

    def step():
        forward().backward(grad)
        grads = tuple(tensor.grad for tensor in leaves)
        for tensor in leaves + tuple(
                module.parameters() if case_name == 'tail' else ()):
            tensor.grad = None
        return grads
    return step


def memory_child(spec: dict) -> dict:
    """Run in a child started with ``benchmarking.MEMORY_ENV``: the
    peak RSS growth of one warm step (``peak_mb``) and the RSS growth from
    before a forward to after it, its output alive (``held_mb``: what a
    network that goes on computing carries to its own peak)."""
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    args = (spec['case_name'], spec['variant'], spec['case'])
    step = variant_step(*args)
    forward = variant_step(*args, forward_only=True)
    step()  # warm-up
    before = bench.rss_mb()
    output = forward()
    held = bench.rss_mb() - before
    del output
    return dict(peak_mb=bench.peak_rss_growth_mb(step), held_mb=held)


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
        memory, ``peak_mb`` and ``memory_ratio`` (on the CPU also
        ``held_mb`` and ``held_ratio``).
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
                figures = dict(peak_mb=bench.cuda_peak_mb(step, device))
            else:
                figures = in_child(
                    'memory_child', dict(case_name=case_name, variant=variant,
                                         case=case, threads=threads),
                    bench.MEMORY_ENV, module=__name__)
            result[variant].update(figures)
        first = result[variants[0]]
        for figures in result.values():
            figures['time_ratio'] = bench.ratio(figures['seconds'],
                                                first['seconds'])
            if memory:
                figures['memory_ratio'] = bench.ratio(figures['peak_mb'],
                                                      first['peak_mb'])
            if 'held_mb' in figures:
                figures['held_ratio'] = bench.ratio(figures['held_mb'],
                                                    first['held_mb'])
        results[case_name] = result
    return results


def autograd_markdown(results: Dict[str, Dict[str, dict]]) -> str:
    """The comparison as a markdown table, ratios to the hand-written
    variant (first row of each case)."""
    lines = ['| case | variant | time (s) | time ratio | peak memory (MiB) '
             '| memory ratio | held after forward (MiB) | held ratio |',
             '|---|---|---|---|---|---|---|---|']

    def cell(figures, key, digits):
        value = figures.get(key)
        return '-' if value is None else f'{value:.{digits}f}'

    for case_name, result in results.items():
        for variant, figures in result.items():
            lines.append(' | '.join(
                [f'| {case_name}', variant] +
                [cell(figures, key, digits) for key, digits in (
                    ('seconds', 4), ('time_ratio', 3), ('peak_mb', 1),
                    ('memory_ratio', 3), ('held_mb', 1),
                    ('held_ratio', 3))]) + ' |')
    return '\n'.join(lines) + '\n'
