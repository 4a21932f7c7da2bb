"""Parameters and FLOPs with mmengine's counter, the correlation included.

mmengine's :class:`~mmengine.analysis.FlopAnalyzer` traces a model and counts
convolutions and matrix products (one multiply-add = one FLOP, the
convention of MMAction2's model zoo). While traced, MotionSqueeze computes
its correlation as one batched matrix product of strips that also covers
pairs outside the window (:mod:`msnet_plugin.models.fast_correlation`), so
the counter would see about 3 times the correlation's work; with
``correlation_impl='reference'`` it would see none (element-wise ops).
:func:`model_complexity` counts the correlation as what it is,
``C * (2d+1)^2 * H * W`` multiply-adds per frame pair (the window's
products, zero padding included), whatever the kernel: it replaces the
matrix products traced inside each MotionSqueeze module by that figure. The
soft-argmax is element-wise work and, like ReLU, softmax and BN, is not
counted.

Use::

    from msnet_plugin.flops import model_complexity
    info = model_complexity(model, (1, 8, 3, 224, 224))
    info['flops'], info['params'], info['correlation_flops']
"""
import functools
from typing import Dict, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer, parameter_count

from .models.motion_squeeze import MotionSqueeze

#: Names of the traced matrix products inside a MotionSqueeze module: its
#: correlation (its convolutions are counted as such).
CORRELATION_PRODUCT_OPS = ('bmm', )


def correlation_macs(module: MotionSqueeze, input_shape: Sequence[int]) -> int:
    """Multiply-adds of ``module``'s correlation for an input of
    ``input_shape`` (N*T, C, H, W): pairs x reduced channels x window x
    positions."""
    frames, _, height, width = (int(size) for size in input_shape)
    pairs = frames // module.num_segments * (module.num_segments - 1)
    return (pairs * module.reduced_channels * module.patch_size**2 * height *
            width)


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
    """mmengine's FlopAnalyzer for ``model`` on ``inputs`` (a recognizer's
    ``extract_feat``, see :class:`_ExtractFeat`), unsupported-op warnings
    off. Module names in its results start with ``model.``."""
    analyzer = FlopAnalyzer(_ExtractFeat(model), (inputs, ))
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
    ms_inputs = {}  # name -> input shape of each MotionSqueeze module

    def record(name, module, args):
        ms_inputs.setdefault(name, tuple(args[0].shape))

    hooks = [
        module.register_forward_pre_hook(functools.partial(record, name))
        for name, module in model.named_modules()
        if isinstance(module, MotionSqueeze)
    ]
    try:
        device = next(model.parameters()).device
        inputs = torch.randn(tuple(input_shape), device=device)
        with torch.no_grad():
            analyzer = flop_analyzer(model, inputs)
            by_operator = analyzer.by_operator()
            by_module = analyzer.by_module_and_operator()
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    modules = dict(model.named_modules())
    correlation = sum(
        correlation_macs(modules[name], shape)
        for name, shape in ms_inputs.items())
    # The analyzer names modules below its wrapper's ``model``.
    traced = sum(
        by_module.get('.'.join(filter(None, ('model', name))), {}).get(op, 0)
        for name in ms_inputs for op in CORRELATION_PRODUCT_OPS)
    return dict(
        params=parameter_count(model)[''],
        flops=sum(by_operator.values()) - traced + correlation,
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
