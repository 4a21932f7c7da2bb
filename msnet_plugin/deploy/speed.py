"""Eager vs torch.compile vs onnxruntime, measured in one process."""
import time
from typing import Dict, Optional

import torch
import torch.nn as nn

from ..benchmarking import alternating_medians
from .onnx_export import onnxruntime_scores, onnxruntime_session


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
        repeats (int): timed rounds; each calls every way once, in turn
            (:func:`~msnet_plugin.benchmarking.alternating_medians`, after
            one untimed round).
        compile_mode (str, optional): ``torch.compile``'s ``mode``.

    Returns:
        dict: for each way, ``seconds`` (median per call), ``speedup``
        (eager seconds / seconds) and ``max_abs_diff`` of its scores from
        eager's; ``compiled`` also has ``first_call_s``.
    """
    if repeats < 1:
        raise ValueError(f'repeats must be >= 1, got {repeats}')
    with torch.no_grad():
        compiled = torch.compile(module, mode=compile_mode)
        start = time.perf_counter()
        compiled(frames)
        first_call = time.perf_counter() - start
        ways = dict(eager=lambda: module(frames),
                    compiled=lambda: compiled(frames))
        if onnx_path is not None:
            session = onnxruntime_session(onnx_path, torch.get_num_threads())
            ways['onnxruntime'] = lambda: onnxruntime_scores(session, frames)
        timings = alternating_medians(ways, rounds=repeats)
        reference = ways['eager']()
        results = {
            name: dict(seconds=timings[name]['median'],
                       max_abs_diff=(run() - reference).abs().max().item())
            for name, run in ways.items()
        }
    results['compiled']['first_call_s'] = first_call
    for result in results.values():
        result['speedup'] = results['eager']['seconds'] / result['seconds']
    return results
