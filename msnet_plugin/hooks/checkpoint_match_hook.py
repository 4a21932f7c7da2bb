"""A checkpoint that does not fit the model stops with a list of what
differs, instead of mmengine's warning (``load_from``, ``--resume`` and
``tools/test.py`` all load with ``strict=False``, so a checkpoint of another
architecture or class count would otherwise leave part of the model at its
random init)."""
from typing import Dict, List, Mapping, Optional, Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import find_latest_checkpoint
from mmaction.registry import HOOKS

from .checkpoint_keys_report_hook import (compare_checkpoint_keys,
                                          revise_checkpoint_keys,
                                          tensor_shape)

# Keys listed per kind of difference before "... and N more".
MAX_LISTED_KEYS = 10


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's weights do not fit the model's."""


def state_dict_differences(
        model_state: Mapping, checkpoint_state: Mapping,
        ignore_prefixes: Sequence[str] = ()) -> Dict[str, List[str]]:
    """What differs between two state dicts (checkpoint keys revised as
    ``Runner.load_checkpoint`` does, ``module.`` stripped).

    Returns:
        dict: ``shape`` (``'key: checkpoint (a, b) vs model (c, d)'``),
        ``missing`` (keys of the model the checkpoint lacks) and
        ``unexpected`` (keys of the checkpoint the model lacks), each sorted;
        keys starting with one of ``ignore_prefixes`` are left out.
    """
    report = compare_checkpoint_keys(model_state, checkpoint_state)
    revised = revise_checkpoint_keys(checkpoint_state)

    def kept(keys):
        return [k for k in keys if not k.startswith(tuple(ignore_prefixes))]

    shape = [
        f'{key}: checkpoint {tensor_shape(revised[key])} vs model '
        f'{tensor_shape(model_state[key])}'
        for key in kept(report['shape_mismatch'])
    ]
    return dict(shape=sorted(shape), missing=kept(report['new']),
                unexpected=kept(report['unused']))


def describe_differences(differences: Dict[str, List[str]]) -> str:
    """The differences as indented lines, at most ``MAX_LISTED_KEYS`` keys
    per kind; empty if there are none."""
    titles = dict(shape='different shapes', missing='missing from the '
                  'checkpoint', unexpected='in the checkpoint, not in the '
                  'model')
    lines = []
    for kind, title in titles.items():
        keys = differences[kind]
        if not keys:
            continue
        lines.append(f'  {len(keys)} {title}:')
        lines.extend(f'    {key}' for key in keys[:MAX_LISTED_KEYS])
        if len(keys) > MAX_LISTED_KEYS:
            lines.append(f'    ... and {len(keys) - MAX_LISTED_KEYS} more')
    return '\n'.join(lines)


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Refuse a checkpoint (``load_from``, resume, ``tools/test.py``) whose
    weights do not fit the model, listing the keys and shapes that differ.

    Runs in ``after_load_checkpoint``, which mmengine's Runner calls with the
    loaded checkpoint before copying its ``state_dict`` into the model.

    Args:
        ignore_prefixes (Sequence[str]): keys starting with these may differ,
            e.g. ``('cls_head.', )`` to fine-tune a checkpoint on a dataset
            with another class count (the new head keeps its init).
    """
    priority = 'VERY_HIGH'

    def __init__(self, ignore_prefixes: Sequence[str] = ()) -> None:
        self.ignore_prefixes = tuple(ignore_prefixes)

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
        details = describe_differences(
            state_dict_differences(model.state_dict(), state,
                                   self.ignore_prefixes))
        if details:
            raise CheckpointMismatchError(
                f'checkpoint {self._source(runner)} does not fit the model '
                f'{type(model).__name__}:\n{details}\nIt was probably saved '
                'for another architecture or number of classes. To fine-tune '
                'it with a new head, add '
                "dict(type='CheckpointMatchHook', ignore_prefixes=['cls_head."
                "']) to custom_hooks.")
