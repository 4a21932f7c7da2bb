"""Measuring MSNet against TSM: step times, clips per second, peak memory.

Used by tools/benchmark.py. Everything here measures; nothing is estimated:

- times: :func:`alternating_medians` runs each candidate once per round, in
  the same process and in turn, and keeps the median over rounds, so that a
  noisy, shared machine slows all candidates alike;
- peak memory on CUDA: ``torch.cuda.max_memory_allocated`` over one step
  (reset before it), everything allocated included;
- peak memory on CPU: growth of the process's peak resident set size over
  one step (:func:`peak_rss_growth_mb`), Linux only. PyTorch's CPU allocator
  hands memory to glibc, which keeps freed blocks unless told otherwise, so
  the measurement runs in a child process started with
  ``MALLOC_MMAP_THRESHOLD_`` set (see :data:`MEMORY_ENV`): every block of
  64 KiB or more is then its own mapping and goes back to the system when
  freed, so the peak RSS tracks the peak of live memory.
"""
import os
import statistics
import time
from typing import Callable, Dict, Iterable, List, Sequence

import torch
import torch.nn as nn

#: Environment of a CPU memory measurement child (see the module doc).
MEMORY_ENV = {'MALLOC_MMAP_THRESHOLD_': '65536'}


def _status_kib(field: str) -> int:
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise RuntimeError(f'/proc/self/status has no {field}')


def rss_mb() -> float:
    """The process's resident memory now, in MiB (Linux; meaningful in a
    process started with :data:`MEMORY_ENV`)."""
    return _status_kib('VmRSS') / 1024


def peak_rss_growth_mb(step: Callable[[], object]) -> float:
    """Peak resident memory added while ``step()`` runs, in MiB (CPU).

    The kernel's peak-RSS mark is reset (``/proc/self/clear_refs``) to the
    current RSS, ``step`` runs, and the new peak minus the RSS before it is
    returned. Only meaningful in a process started with :data:`MEMORY_ENV`.

    Raises:
        RuntimeError: without that environment, or off Linux.
    """
    if os.environ.get('MALLOC_MMAP_THRESHOLD_') is None:
        raise RuntimeError(
            'peak_rss_growth_mb needs a process started with '
            f'{MEMORY_ENV} (glibc would keep freed memory and hide peaks)')
    if not os.path.exists('/proc/self/clear_refs'):
        raise RuntimeError('peak_rss_growth_mb needs Linux /proc')
    with open('/proc/self/clear_refs', 'w') as clear_refs:
        clear_refs.write('5')  # reset the peak RSS to the current RSS
    before = _status_kib('VmRSS')
    step()
    return (_status_kib('VmHWM') - before) / 1024


def cuda_peak_mb(step: Callable[[], object], device: torch.device) -> float:
    """Peak CUDA memory allocated during ``step()``, in MiB (all live
    tensors included)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def alternating_medians(candidates: Dict[str, Callable[[], object]],
                        rounds: int,
                        warmup: int = 1,
                        sync: Callable[[], object] = lambda: None
                        ) -> Dict[str, Dict[str, object]]:
    """Seconds per call of each candidate, alternating within each round.

    Args:
        candidates (dict): name -> a callable doing one unit of work.
        rounds (int): timed rounds; each runs every candidate once, the
            order rotating by one each round.
        warmup (int): untimed rounds first.
        sync (callable): called before reading the clock (CUDA sync).

    Returns:
        dict: name -> ``dict(median=s, times=[s, ...])``.
    """
    if rounds < 1:
        raise ValueError(f'rounds must be >= 1, got {rounds}')
    names = list(candidates)
    times: Dict[str, List[float]] = {name: [] for name in names}
    for round_index in range(warmup + rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            sync()
            start = time.perf_counter()
            candidates[name]()
            sync()
            if round_index >= warmup:
                times[name].append(time.perf_counter() - start)
    return {
        name: dict(median=statistics.median(values), times=values)
        for name, values in times.items()
    }


def recognizer_batch(model: nn.Module, batch: int, num_frames: int,
                     size: int, num_classes: int) -> dict:
    """A batch as MMAction2's dataloader gives it to ``train_step``: uint8
    (T, 3, H, W) clips (FormatShape NCHW of T single-frame segments) and
    labelled data samples."""
    from mmaction.structures import ActionDataSample
    generator = torch.Generator().manual_seed(0)
    inputs = [
        torch.randint(0, 256, (num_frames, 3, size, size),
                      generator=generator, dtype=torch.uint8)
        for _ in range(batch)
    ]
    samples = [
        ActionDataSample().set_gt_label(index % num_classes)
        for index in range(batch)
    ]
    return dict(inputs=inputs, data_samples=samples)


def recognizer_steps(model: nn.Module, data: dict) -> Dict[str, Callable]:
    """One training step (forward, backward, SGD update through mmengine's
    OptimWrapper, as the Runner does) and one inference (``test_step``)."""
    from mmengine.optim import OptimWrapper
    optim_wrapper = OptimWrapper(
        torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9))

    def train():
        model.train()
        return model.train_step(data, optim_wrapper)

    def infer():
        model.eval()
        with torch.no_grad():
            return model.test_step(data)

    return dict(train=train, infer=infer)


def module_steps(module: nn.Module, inputs: torch.Tensor
                 ) -> Dict[str, Callable]:
    """Training step (forward, mean of the output as the loss, backward,
    SGD update) and inference of a bare module on ``inputs``."""
    optimizer = torch.optim.SGD(module.parameters(), lr=1e-4, momentum=0.9)

    def train():
        module.train()
        loss = module(inputs).mean()
        loss.backward()
        optimizer.step()
        # As OptimWrapper does: gradients freed at the end of the step.
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def infer():
        module.eval()
        with torch.no_grad():
            return module(inputs)

    return dict(train=train, infer=infer)


def correlation_step(impl, batch: int, channels: int, size: int,
                     max_disp: int, device='cpu') -> Callable[[], object]:
    """Forward and backward of ``local_correlation(impl=impl)`` (or of
    ``impl(f1, f2, max_disp)`` for a callable) on random (batch, channels,
    size, size) maps on ``device``, the gradient of the output a fixed
    random tensor (allocated before, like the maps)."""
    from .models import local_correlation
    kernel = impl if callable(impl) else (
        lambda f1, f2, d: local_correlation(f1, f2, d, impl=impl))
    generator = torch.Generator().manual_seed(0)
    f1, f2 = (torch.randn(batch, channels, size, size, generator=generator
                          ).to(device).requires_grad_() for _ in range(2))
    grad = torch.randn(batch, (2 * max_disp + 1)**2, size, size,
                       generator=generator).to(device)

    def step():
        kernel(f1, f2, max_disp).backward(grad)
        # Dropped after the step, not before: a measurement that starts
        # with the previous gradients alive would hide the new ones.
        f1.grad = f2.grad = None

    return step


def markdown_table(header: Sequence[str], rows: Iterable[Sequence]
                   ) -> List[str]:
    """The lines of a markdown table: ``header`` and one line per row."""
    return (['| ' + ' | '.join(header) + ' |', '|---' * len(header) + '|'] +
            ['| ' + ' | '.join(str(cell) for cell in row) + ' |'
             for row in rows])


def write_report(out_dir: str, stem: str, data, table: str) -> None:
    """Write ``data`` to OUT_DIR/STEM.json and the markdown ``table`` to
    OUT_DIR/STEM.md, and print the table."""
    import json
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, f'{stem}.json'), 'w') as out:
        json.dump(data, out, indent=1)
    with open(os.path.join(out_dir, f'{stem}.md'), 'w') as out:
        out.write(table)
    print(table)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else float('nan')
