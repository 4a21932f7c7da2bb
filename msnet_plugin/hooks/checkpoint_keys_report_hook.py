"""Log exactly which model tensors a loaded checkpoint fills and which not."""
import re
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from mmaction.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

# The key renaming Runner.load_checkpoint applies by default.
DEFAULT_REVISE_KEYS = ((r'^module\.', ''), )


def tensor_shape(value) -> Tuple[int, ...]:
    """Shape of a state-dict value; () for a non-tensor entry."""
    return tuple(getattr(value, 'shape', ()))


def revise_checkpoint_keys(
    checkpoint_state: Mapping[str, torch.Tensor],
    revise_keys: Sequence[Tuple[str, str]] = DEFAULT_REVISE_KEYS
) -> Dict[str, torch.Tensor]:
    """Checkpoint keys renamed by each ``(pattern, replacement)`` in turn,
    as ``Runner.load_checkpoint`` renames them."""
    revised = {}
    for key, value in checkpoint_state.items():
        for pattern, replacement in revise_keys:
            key = re.sub(pattern, replacement, key)
        revised[key] = value
    return revised


def compare_checkpoint_keys(
    model_state: Mapping[str, torch.Tensor],
    checkpoint_state: Mapping[str, torch.Tensor],
    revise_keys: Sequence[Tuple[str, str]] = DEFAULT_REVISE_KEYS
) -> Dict[str, List[str]]:
    """Compare a model's ``state_dict()`` with a checkpoint's state dict.

    Args:
        model_state: the model's tensors by name.
        checkpoint_state: the checkpoint's tensors by name (keys are renamed
            by ``revise_keys`` first, as mmengine does when loading).
        revise_keys: ``(pattern, replacement)`` pairs applied to checkpoint
            keys with ``re.sub``.

    Returns:
        dict of sorted key lists: ``loaded`` (same name and shape), ``new``
        (only in the model: they keep their initialisation), ``unused``
        (only in the checkpoint) and ``shape_mismatch`` (in both with
        different shapes: not loaded, keep their initialisation).
    """
    revised = revise_checkpoint_keys(checkpoint_state, revise_keys)
    common = model_state.keys() & revised.keys()
    mismatch = {
        key
        for key in common
        if tensor_shape(model_state[key]) != tensor_shape(revised[key])
    }
    return dict(
        loaded=sorted(common - mismatch),
        new=sorted(model_state.keys() - revised.keys()),
        unused=sorted(revised.keys() - model_state.keys()),
        shape_mismatch=sorted(mismatch))


def format_checkpoint_keys(report: Dict[str, List[str]]) -> str:
    """The report of :func:`compare_checkpoint_keys` as log lines."""
    total = len(report['loaded']) + len(report['new']) + len(
        report['shape_mismatch'])

    def listed(keys):
        return f'{len(keys)}: ' + ', '.join(keys) if keys else 'none'

    return '\n'.join([
        f'checkpoint keys: {len(report["loaded"])} of the model\'s {total} '
        'tensors loaded',
        'new keys (not in the checkpoint; they keep their initialisation) '
        f'{listed(report["new"])}',
        'unused keys (in the checkpoint, not in the model) '
        f'{listed(report["unused"])}',
        'shape-mismatched keys (not loaded; they keep their initialisation) '
        f'{listed(report["shape_mismatch"])}',
    ])


@HOOKS.register_module()
class CheckpointKeysReportHook(Hook):
    """Logs, whenever the Runner loads a checkpoint (``load_from`` or
    ``resume``), which model tensors it fills, which are new, which
    checkpoint tensors go unused and which differ in shape.

    mmengine itself only warns about missing and unexpected keys when there
    are some; this hook also says "none", so a warm start from, e.g.,
    MMAction2's TSM-R50 checkpoint into MSNet states that only
    ``backbone.ms_layer2.*`` is new and nothing is unused.

    Args:
        revise_keys: key renaming applied to the checkpoint, as in
            ``Runner.load_checkpoint`` (default: strip ``module.``).
    """

    priority = 'VERY_LOW'

    def __init__(self,
                 revise_keys: Optional[Sequence[Tuple[str, str]]] = None):
        self.revise_keys = tuple(
            DEFAULT_REVISE_KEYS if revise_keys is None else revise_keys)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state = checkpoint.get('state_dict', checkpoint)
        report = compare_checkpoint_keys(model.state_dict(), state,
                                         self.revise_keys)
        runner.logger.info(format_checkpoint_keys(report))
