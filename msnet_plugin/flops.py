"""Parameters and FLOPs with mmengine's counter, the correlation included.

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` traces a model and counts
convolutions and matrix products (one multiply-add = one FLOP, the
convention of MMAction2's model zoo). A custom autograd Function appears in
the trace as one ``prim::PythonOp.<Name>`` node it knows nothing about, so
the correlation would count as zero. :func:`correlation_flop_handle` counts
it as ``C * (2d+1)^2 * H * W`` multiply-adds per frame pair (the window's
products, zero padding included), for the plugin's fast and Triton kernels
and for mmcv's ``Correlation``. The lean soft-argmax is element-wise work
and, like ReLU, softmax and BN, is not counted. With
``correlation_impl='reference'`` the correlation traces as element-wise ops
and is not counted either.

Use::

    from msnet_plugin.flops import model_complexity
    info = model_complexity(model, (1, 8, 3, 224, 224))
    info['flops'], info['params'], info['correlation_flops']
"""
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.analysis.jit_handles import get_shape

#: Trace names of the correlation Functions the handle counts.
CORRELATION_OPS = ('prim::PythonOp.FastLocalCorrelation',
                   'prim::PythonOp.TritonLocalCorrelation',
                   'prim::PythonOp.CorrelationFunction')
#: Element-wise Functions, not counted (mmengine skips element-wise ops).
IGNORED_OPS = ('prim::PythonOp.GaussianSoftArgmax', )


def correlation_flop_handle(inputs: List, outputs: List) -> int:
    """Multiply-adds of one traced correlation node.

    Args:
        inputs (list[torch._C.Value]): the node's inputs; the first is f1,
            (B, C, H, W).
        outputs (list[torch._C.Value]): the output, (B, (2d+1)^2, H, W) or
            mmcv's (B, 2d+1, 2d+1, H, W).

    Returns:
        int: ``C`` times the number of output values.
    """
    channels = get_shape(inputs[0])[1]
    count = 1
    for size in get_shape(outputs[0]):
        count *= size
    return count * channels


class _ExtractFeat(nn.Module):
    """Wraps a recognizer so its ``extract_feat`` is what gets traced (as
    MMAction2's tools/analysis_tools/get_flops.py does); other modules are
    called as they are."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor):
        if hasattr(self.model, 'extract_feat'):
            feats = self.model.extract_feat(inputs)
            return feats[0] if isinstance(feats, tuple) else feats
        return self.model(inputs)


def flop_analyzer(model: nn.Module, inputs: torch.Tensor) -> FlopAnalyzer:
    """mmengine's FlopAnalyzer for ``model`` on ``inputs``, with the
    correlation handle installed and unsupported-op warnings off."""
    analyzer = FlopAnalyzer(_ExtractFeat(model), (inputs, ))
    analyzer.set_op_handle(**{name: correlation_flop_handle
                              for name in CORRELATION_OPS})
    analyzer.set_op_handle(**{name: None for name in IGNORED_OPS})
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer


def model_complexity(model: nn.Module,
                     input_shape: Sequence[int]) -> Dict[str, int]:
    """Parameters and FLOPs of ``model`` for one input of ``input_shape``.

    Args:
        model (nn.Module): a built model; for an MMAction2 recognizer its
            ``extract_feat`` (backbone and neck) is counted, like MMAction2's
            get_flops tool, e.g. ``(1, 8, 3, 224, 224)`` for one 8-frame
            clip of a Recognizer2D, ``(1, 1, 3, 8, 224, 224)`` for a
            Recognizer3D; any other module gets the tensor as it is, e.g.
            ``(8, 512, 28, 28)`` for a MotionSqueeze.
        input_shape (Sequence[int]): the full shape of that tensor.

    Returns:
        dict: ``params`` (all parameters, heads included), ``flops``
        (multiply-adds of the traced forward), ``correlation_flops`` (the
        part of ``flops`` from correlation nodes).
    """
    if not all(isinstance(size, int) and size > 0 for size in input_shape):
        raise ValueError('input_shape must be positive ints, got '
                         f'{tuple(input_shape)}')
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        inputs = torch.randn(tuple(input_shape), device=device)
        with torch.no_grad():
            analyzer = flop_analyzer(model, inputs)
            by_operator = analyzer.by_operator()
    finally:
        model.train(was_training)
    # by_operator() names ops without their ``prim::`` prefix.
    correlation_names = {name.split('::', 1)[1] for name in CORRELATION_OPS}
    correlation = sum(count for name, count in by_operator.items()
                      if name in correlation_names)
    return dict(
        params=parameter_count(model)[''],
        flops=sum(by_operator.values()),
        correlation_flops=correlation)


def build_recognizer(cfg, num_frames: int = None) -> nn.Module:
    """Build ``cfg.model`` for counting or timing, without loading weights.

    Args:
        cfg (mmengine.Config): a recognizer config.
        num_frames (int, optional): frames per clip; sets the backbone's and
            head's ``num_segments`` where they have one (TSM shifts by it).

    Returns:
        nn.Module: the recognizer (weights as initialised by the
        constructors; ``pretrained`` is never loaded).
    """
    from mmaction.registry import MODELS
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    model_cfg = cfg.model.copy()
    if num_frames is not None:
        if num_frames < 1:
            raise ValueError(f'num_frames must be >= 1, got {num_frames}')
        for part in ('backbone', 'cls_head'):
            if part in model_cfg and _takes_num_segments(model_cfg[part]):
                model_cfg[part]['num_segments'] = num_frames
    return MODELS.build(model_cfg)


def _takes_num_segments(part_cfg: dict) -> bool:
    """Whether the registered class of ``part_cfg`` (or a parent) has a
    ``num_segments`` argument (ResNetTSM defaults it to 8 without saying)."""
    from .checks import UNSET, registered_default
    return 'num_segments' in part_cfg or registered_default(
        part_cfg.get('type', ''), 'num_segments') is not UNSET


def recognizer_input_shape(model: nn.Module, num_frames: int, height: int,
                           width: int) -> tuple:
    """The ``extract_feat`` input of one clip: (1, T, 3, H, W) for a
    Recognizer2D, (1, 1, 3, T, H, W) for a Recognizer3D."""
    from mmaction.models.recognizers import Recognizer3D
    if isinstance(model, Recognizer3D):
        return (1, 1, 3, num_frames, height, width)
    return (1, num_frames, 3, height, width)
