"""Checks of a config that catch mistakes before anything is built.

:func:`check_segment_counts` compares the segment counts of a recognizer's
backbone, MotionSqueeze, neck and head. They must agree: the backbone's
temporal shift and MotionSqueeze, MotionSqueezeNeck and TSMHead each regroup
the (N*T, ...) frame batch into clips of their own ``num_segments``, so a
disagreement gives a shape error deep in a forward pass or, worse, silently
mixes frames of different clips. ``tools/train.py`` and ``tools/test.py``
call it right after loading the config.
"""
import inspect
from typing import Any, Dict, Optional

from mmaction.registry import MODELS

from .models import MSResNetTSM

#: What :func:`registered_default` returns for an argument no constructor
#: takes.
UNSET = object()


class SegmentCountError(ValueError):
    """The segment counts of a model config disagree."""


def registered_default(type_name: Any, argument: str) -> Any:
    """Default of ``argument`` in the constructor of the registered model
    ``type_name`` (a name or a class; or of its bases, for arguments passed
    on by ``**kwargs``): ``inspect.Parameter.empty`` for a required
    argument, :data:`UNSET` if no constructor takes it."""
    if not isinstance(type_name, str):
        model_class = type_name
    else:
        model_class = MODELS.get(type_name.split('.')[-1])
    for klass in getattr(model_class, '__mro__', ()):
        if '__init__' not in vars(klass):
            continue
        parameter = inspect.signature(klass.__init__).parameters.get(argument)
        if parameter is not None:
            return parameter.default
    return UNSET


def _argument(module_cfg: Optional[dict], argument: str) -> Any:
    """The value of ``argument`` of a model config: set, or the default of
    its registered type; ``UNSET`` if it has none."""
    if not module_cfg:
        return UNSET
    if argument in module_cfg:
        return module_cfg[argument]
    return registered_default(module_cfg.get('type'), argument)


def check_segment_counts(model_cfg: dict) -> Dict[str, int]:
    """Raise :class:`SegmentCountError` if the segment counts of a
    recognizer config disagree.

    Looked at: ``backbone.num_segments`` (``ResNetTSM``, ``MSResNetTSM``),
    ``backbone.ms_cfg.num_segments`` (which must equal the backbone's, or half
    of it after layer1 with ``temporal_pool``), ``neck.num_segments``
    (``MotionSqueezeNeck``) and ``cls_head.num_segments`` (``TSMHead``).
    Modules without a ``num_segments`` argument are ignored.

    Args:
        model_cfg (dict): the ``model`` of a config.

    Returns:
        dict: config key -> segment count, of every count compared.
    """
    counts: Dict[str, int] = {}
    for part in ('backbone', 'neck', 'cls_head'):
        value = _argument(model_cfg.get(part), 'num_segments')
        if isinstance(value, int):
            counts[f'model.{part}.num_segments'] = value
    if len(set(counts.values())) > 1:
        listed = ', '.join(f'{key}={value}' for key, value in counts.items())
        raise SegmentCountError(
            f'segment counts disagree: {listed}. Every part regroups the '
            'batch of frames into clips of its own num_segments, so they '
            'must be equal (set them from one variable in the config).')

    backbone = model_cfg.get('backbone') or {}
    ms_segments = (backbone.get('ms_cfg') or {}).get('num_segments')
    backbone_segments = counts.get('model.backbone.num_segments')
    if ms_segments is not None and backbone_segments is not None:
        temporal_pool = _argument(backbone, 'temporal_pool') is True
        for stage in _argument(backbone, 'ms_stages') or ():
            expected = MSResNetTSM.segments_after_stage(
                backbone_segments, temporal_pool, stage)
            if ms_segments == expected:
                continue
            pooled = expected != backbone_segments
            raise SegmentCountError(
                f'segment counts disagree: model.backbone.ms_cfg.num_segments'
                f'={ms_segments}, but model.backbone.num_segments='
                f'{backbone_segments}'
                + (' with temporal_pool' if pooled else '') +
                f' gives {expected} at the MS stage; leave num_segments out '
                'of ms_cfg, it follows the backbone')
        counts['model.backbone.ms_cfg.num_segments'] = ms_segments
    return counts


def require_checkpoint_match(cfg) -> None:
    """Make ``cfg.custom_hooks`` refuse a checkpoint that does not fit the
    model: the config's ``CheckpointMatchHook`` gets ``refuse=True``, or one
    is added, so that testing or resuming such a checkpoint stops with a
    list of the differences (tools/test.py, and tools/train.py with
    ``--resume``)."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    matching = [
        hook for hook in hooks if isinstance(hook, dict) and str(
            hook.get('type', '')).split('.')[-1] == 'CheckpointMatchHook'
    ]
    for hook in matching:
        hook['refuse'] = True
    if not matching:
        hooks.append(dict(type='CheckpointMatchHook'))
    cfg.custom_hooks = hooks
