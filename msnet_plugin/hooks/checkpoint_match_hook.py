"""Compare a loaded checkpoint with the model: log what it fills, and refuse
one that does not fit.

mmengine's Runner loads ``load_from``, ``--resume`` and ``tools/test.py``
checkpoints with ``strict=False`` and only warns about keys that differ, so a
checkpoint of another architecture or class count would leave part of the
model at its random init. :class:`CheckpointMatchHook` logs, for every load,
which tensors the checkpoint fills, which are new, which go unused and which
differ in shape, and (``refuse=True``) stops the run with that list.
"""
import re
from typing import Dict, Mapping, Optional, Sequence, Tuple

import torch
from mmaction.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import (_load_checkpoint,
                                        _load_checkpoint_to_model,
                                        find_latest_checkpoint)

# The key renaming Runner.load_checkpoint applies by default.
DEFAULT_REVISE_KEYS = ((r'^module\.', ''), )
# Keys listed per kind of difference in an error, before "... and N more".
MAX_LISTED_KEYS = 10


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's weights do not fit the model's."""


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
) -> dict:
    """Compare a model's ``state_dict()`` with a checkpoint's state dict.

    Args:
        model_state: the model's tensors by name.
        checkpoint_state: the checkpoint's tensors by name (keys are renamed
            by ``revise_keys`` first, as mmengine does when loading).
        revise_keys: ``(pattern, replacement)`` pairs applied to checkpoint
            keys with ``re.sub``.

    Returns:
        dict: sorted key lists ``loaded`` (same name and shape), ``new``
        (only in the model: they keep their initialisation) and ``unused``
        (only in the checkpoint), and ``shape_mismatch``, a dict sorted by
        key, ``key -> (checkpoint shape, model shape)``, of the keys in both
        with different shapes (not loaded: they keep their initialisation).
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
        shape_mismatch={
            key: (tensor_shape(revised[key]), tensor_shape(model_state[key]))
            for key in sorted(mismatch)
        })


def format_checkpoint_keys(report: dict) -> str:
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


def describe_differences(report: dict,
                         ignore_prefixes: Sequence[str] = ()) -> str:
    """The differences of a :func:`compare_checkpoint_keys` report as
    indented lines, at most ``MAX_LISTED_KEYS`` keys per kind, leaving out
    keys that start with one of ``ignore_prefixes``; empty if none remain."""
    titles = dict(shape_mismatch='different shapes',
                  new='missing from the checkpoint',
                  unused='in the checkpoint, not in the model')
    lines = []
    for kind, title in titles.items():
        keys = [
            key for key in report[kind]
            if not key.startswith(tuple(ignore_prefixes))
        ]
        if kind == 'shape_mismatch':
            keys = [
                f'{key}: checkpoint {report[kind][key][0]} vs model '
                f'{report[kind][key][1]}' for key in keys
            ]
        if not keys:
            continue
        lines.append(f'  {len(keys)} {title}:')
        lines.extend(f'    {key}' for key in keys[:MAX_LISTED_KEYS])
        if len(keys) > MAX_LISTED_KEYS:
            lines.append(f'    ... and {len(keys) - MAX_LISTED_KEYS} more')
    return '\n'.join(lines)


def mismatch_error(source: Optional[str], model: torch.nn.Module,
                   details: str) -> CheckpointMismatchError:
    """The error for checkpoint ``source`` whose ``details`` (from
    :func:`describe_differences`) do not fit ``model``."""
    return CheckpointMismatchError(
        f'checkpoint {source} does not fit the model '
        f'{type(model).__name__}:\n{details}\nIt was probably saved '
        'for another architecture or number of classes. To fine-tune '
        'it with a new head, add '
        "dict(type='CheckpointMatchHook', ignore_prefixes=['cls_head."
        "']) to custom_hooks.")


def load_matching_checkpoint(model: torch.nn.Module, filename: str) -> dict:
    """Load ``filename`` (an mmengine checkpoint or a bare state dict) into
    ``model`` if every tensor fits, as the tools that only run a model
    (demo, visualisation, export) need; else raise
    :class:`CheckpointMismatchError` listing the differences, the model
    untouched. Returns the checkpoint."""
    checkpoint = _load_checkpoint(filename, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint)
    details = describe_differences(
        compare_checkpoint_keys(model.state_dict(), state))
    if details:
        raise mismatch_error(filename, model, details)
    _load_checkpoint_to_model(model, checkpoint, strict=True)
    return checkpoint


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Log what a loaded checkpoint fills; refuse one that does not fit.

    Runs in ``after_load_checkpoint``, which mmengine's Runner calls with the
    loaded checkpoint (``load_from``, resume, ``tools/test.py``) before
    copying its ``state_dict`` into the model. It logs which tensors the
    checkpoint fills, which are new, which go unused and which differ in
    shape (mmengine warns only when some differ; this also says "none", so a
    warm start from MMAction2's TSM-R50 into MSNet states that only
    ``backbone.ms_layer2.*`` is new).

    Args:
        refuse (bool): raise :class:`CheckpointMismatchError`, listing the
            differences, when any remain after ``ignore_prefixes``. False
            only logs (a warm start whose new modules keep their init).
            ``tools/test.py`` and ``tools/train.py --resume`` always refuse.
        ignore_prefixes (Sequence[str]): keys starting with these may differ,
            e.g. ``('cls_head.', )`` to fine-tune a checkpoint on a dataset
            with another class count (the new head keeps its init).
        revise_keys: key renaming applied to the checkpoint, as in
            ``Runner.load_checkpoint`` (default: strip ``module.``).
    """
    priority = 'VERY_HIGH'

    def __init__(self,
                 refuse: bool = True,
                 ignore_prefixes: Sequence[str] = (),
                 revise_keys: Optional[Sequence[Tuple[str, str]]] = None):
        self.refuse = refuse
        self.ignore_prefixes = tuple(ignore_prefixes)
        self.revise_keys = tuple(
            DEFAULT_REVISE_KEYS if revise_keys is None else revise_keys)

    @staticmethod
    def _source(runner) -> Optional[str]:
        """The file the runner is loading (mmengine keeps it private)."""
        load_from = getattr(runner, '_load_from', None)
        if load_from is None and getattr(runner, '_resume', False):
            return find_latest_checkpoint(runner.work_dir)
        return load_from

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state = checkpoint.get('state_dict', checkpoint)
        report = compare_checkpoint_keys(model.state_dict(), state,
                                         self.revise_keys)
        runner.logger.info(format_checkpoint_keys(report))
        details = describe_differences(report, self.ignore_prefixes)
        if self.refuse and details:
            raise mismatch_error(self._source(runner), model, details)
