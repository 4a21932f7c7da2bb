"""Export a :class:`FramesToScores` to ONNX and run it with onnxruntime.

Two exporters of torch 2.13 are offered:

- ``'torchscript'`` (default; ``torch.onnx.export(..., dynamo=False)``):
  traces the module once; the batch axis is made dynamic with
  ``dynamic_axes``. The file is then simplified by onnxscript's optimizer
  (constants folded and moved into initializers), as the dynamo exporter
  does with its own output.
- ``'dynamo'`` (torch 2.13's default; ``dynamo=True``): ``torch.export``
  then onnxscript's translation. The batch axis is a symbolic ``Dim``.

Exporters see MotionSqueeze's correlation and soft-argmax as plain ops
whatever its ``correlation_impl`` (see
:func:`msnet_plugin.models.tracing.is_exporting_or_compiling`): one
batched matrix product between two fixed gathers, not one product per
displacement.

Both give only ONNX's standard (``ai.onnx``) operators for MSNet (checked by
:func:`nonstandard_onnx_ops`) and the same scores as PyTorch within 1e-7.
"""
import warnings
from typing import List, Optional

import numpy as np
import torch
import torch.nn as nn

EXPORTERS = ('torchscript', 'dynamo')
#: ONNX opset for the TorchScript exporter; onnxruntime >= 1.14 runs it.
DEFAULT_OPSET = 17
#: Domains of ONNX's standard operators ('' is ai.onnx's short name).
STANDARD_DOMAINS = ('', 'ai.onnx')


def export_onnx(module: nn.Module,
                frames: torch.Tensor,
                path: str,
                exporter: str = 'torchscript',
                opset: Optional[int] = None,
                batch_multiple: int = 1) -> str:
    """Export ``module`` (frames -> scores) to ``path`` with a dynamic batch.

    Args:
        module (nn.Module): in eval mode; (N, T, 3, H, W) -> (N, K).
        frames (Tensor): an example input (N, T, 3, H, W); T, H and W are
            fixed in the graph, N is the dynamic axis ``batch``.
        path (str): the ``.onnx`` file to write.
        exporter (str): ``'torchscript'`` or ``'dynamo'`` (module docstring).
        opset (int, optional): ONNX opset; None: :data:`DEFAULT_OPSET` for
            ``'torchscript'``, the exporter's own default for ``'dynamo'``.
        batch_multiple (int): the dynamic axis is a multiple of this (for
            ``'dynamo'``, which checks it: e.g. ``num_segments`` for a module
            that takes (N*T, C, H, W) frames).

    Returns:
        str: ``path``. The graph has input ``frames`` and output ``scores``.
    """
    if exporter not in EXPORTERS:
        raise ValueError(f'exporter must be one of {EXPORTERS}, got '
                         f'{exporter!r}')
    if module.training:
        raise ValueError('export a module in eval mode (call .eval()): in '
                         'training mode BatchNorm and dropout change the '
                         'scores')
    names = dict(input_names=['frames'], output_names=['scores'])
    with torch.no_grad(), warnings.catch_warnings():
        if exporter == 'torchscript':
            # The input checks of MotionSqueeze and FramesToScores read
            # shapes in Python; tracing warns that they become constants,
            # which is right: they hold for every batch size.
            warnings.simplefilter('ignore', torch.jit.TracerWarning)
            # torch 2.13 marks dynamo=False as deprecated.
            warnings.simplefilter('ignore', DeprecationWarning)
            warnings.simplefilter('ignore', FutureWarning)
            torch.onnx.export(
                module, (frames, ), path, dynamo=False,
                opset_version=opset or DEFAULT_OPSET,
                dynamic_axes={'frames': {0: 'batch'},
                              'scores': {0: 'batch'}},
                **names)
            _optimize_onnx_file(path)
        else:
            batch = torch.export.Dim('batch')
            if batch_multiple != 1:
                batch = batch_multiple * batch
            torch.onnx.export(
                module, (frames, ), path, dynamo=True, opset_version=opset,
                dynamic_shapes=({0: batch}, ), verbose=False, **names)
    return path


def _optimize_onnx_file(path: str) -> None:
    """Fold constants and drop dead nodes in ``path``, in place (onnxscript's
    optimizer, which the dynamo exporter runs on its own output)."""
    import onnx
    import onnxscript.optimizer
    model = onnx.load(path)
    onnx.save(onnxscript.optimizer.optimize(model), path)


def onnx_node_count(path: str) -> int:
    """Nodes of the main graph of the ONNX file at ``path``."""
    import onnx
    return len(onnx.load(path, load_external_data=False).graph.node)


def nonstandard_onnx_ops(path: str) -> List[str]:
    """``domain::op`` of every node outside ONNX's standard operator set,
    including nodes inside local functions; empty for a portable graph."""
    import onnx
    model = onnx.load(path, load_external_data=False)
    nodes = list(model.graph.node)
    for function in model.functions:
        nodes.extend(function.node)
    return sorted({f'{node.domain}::{node.op_type}'
                   for node in nodes
                   if node.domain not in STANDARD_DOMAINS} |
                  {f'function {function.domain}::{function.name}'
                   for function in model.functions})


def onnxruntime_session(path: str, num_threads: Optional[int] = None):
    """An onnxruntime CPU session for ``path``; ``num_threads`` intra-op
    threads (None: onnxruntime's default)."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    return onnxruntime.InferenceSession(
        path, options, providers=['CPUExecutionProvider'])


def onnxruntime_scores(session_or_path, frames: torch.Tensor) -> torch.Tensor:
    """Run an exported graph on CPU: (N, T, 3, H, W) -> (N, K) scores."""
    session = (onnxruntime_session(session_or_path) if isinstance(
        session_or_path, str) else session_or_path)
    inputs = {'frames': np.ascontiguousarray(frames.detach().cpu().numpy(),
                                             dtype=np.float32)}
    return torch.from_numpy(session.run(['scores'], inputs)[0])
