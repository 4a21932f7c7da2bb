"""Eager vs torch.compile vs onnxruntime, measured in one process."""
import statistics
import time
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn

from .onnx_export import onnxruntime_scores, onnxruntime_session


def _median_seconds(run: Callable[[], torch.Tensor], repeats: int):
    """Median wall time of ``repeats`` calls of ``run`` and its last output;
    one call before timing warms caches up."""
    output = run()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), output


def compare_inference_speed(module: nn.Module,
                            frames: torch.Tensor,
                            onnx_path: Optional[str] = None,
                            repeats: int = 5,
                            compile_mode: Optional[str] = None
                            ) -> Dict[str, dict]:
    """Time one inference of ``frames`` three ways on the CPU.

    - ``eager``: ``module(frames)`` under ``torch.no_grad``;
    - ``compiled``: ``torch.compile(module, mode=compile_mode)`` (inductor);
      its first call, which compiles, is reported as ``first_call_s``;
    - ``onnxruntime``: the graph at ``onnx_path`` (skipped when None), with
      as many intra-op threads as torch uses.

    Args:
        module (nn.Module): eval mode; (N, T, 3, H, W) -> (N, K).
        frames (Tensor): (N, T, 3, H, W) input, timed as one batch.
        onnx_path (str, optional): an export of ``module``.
        repeats (int): timed calls per way (after one warm-up call).
        compile_mode (str, optional): ``torch.compile``'s ``mode``.

    Returns:
        dict: for each way, ``seconds`` (median per call), ``speedup``
        (eager seconds / seconds) and ``max_abs_diff`` of its scores from
        eager's; ``compiled`` also has ``first_call_s``.
    """
    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats}')
    results = {}
    with torch.no_grad():
        seconds, reference = _median_seconds(lambda: module(frames), repeats)
        results['eager'] = dict(seconds=seconds, max_abs_diff=0.0)

        compiled = torch.compile(module, mode=compile_mode)
        start = time.perf_counter()
        compiled(frames)
        first_call = time.perf_counter() - start
        seconds, scores = _median_seconds(lambda: compiled(frames), repeats)
        results['compiled'] = dict(
            seconds=seconds, first_call_s=first_call,
            max_abs_diff=(scores - reference).abs().max().item())

    if onnx_path is not None:
        session = onnxruntime_session(onnx_path, torch.get_num_threads())
        seconds, scores = _median_seconds(
            lambda: onnxruntime_scores(session, frames), repeats)
        results['onnxruntime'] = dict(
            seconds=seconds,
            max_abs_diff=(scores - reference).abs().max().item())
    for result in results.values():
        result['speedup'] = results['eager']['seconds'] / result['seconds']
    return results
