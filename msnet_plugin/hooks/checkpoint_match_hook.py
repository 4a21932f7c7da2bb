"""Compare a loaded checkpoint with the model: log what it fills, and refuse
one that does not fit.

mmengine's Runner loads ``load_from``, ``--resume`` and ``tools/test.py``
checkpoints with ``strict=False`` and only warns about keys that differ, so a
checkpoint of another architecture or class count would leave part of the
model at its random init. :class:`CheckpointMatchHook` logs, for every load,
which tensors the checkpoint fills, which are new, which go unused and which
differ in shape, and (``refuse=True``) stops the run with that list.
"""
from typing import Optional, Sequence, Tuple

from mmaction.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import find_latest_checkpoint

from ..checkpoints import (DEFAULT_REVISE_KEYS, compare_checkpoint_keys,
                           describe_differences, format_checkpoint_keys,
                           mismatch_error, state_dict_of)


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
        refuse (bool): raise
            :class:`~msnet_plugin.errors.CheckpointMismatchError`, listing the
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
        report = compare_checkpoint_keys(model.state_dict(),
                                         state_dict_of(checkpoint) or {},
                                         self.revise_keys)
        runner.logger.info(format_checkpoint_keys(report))
        details = describe_differences(report, self.ignore_prefixes)
        if self.refuse and details:
            raise mismatch_error(self._source(runner), model, details)
