"""Stop training at the first NaN or infinite loss, naming the iteration.

mmengine 0.10.7 and MMAction2 1.2.0 have no such hook (mmcv 1.x and
MMDetection have one of this name), so a diverged run goes on writing
checkpoints full of NaN until its last epoch.
"""
import math

from mmengine.hooks import Hook
from mmaction.registry import HOOKS

from ..errors import InvalidLossError


@HOOKS.register_module()
class CheckInvalidLossHook(Hook):
    """Raise :class:`InvalidLossError` when the loss of a training iteration
    is NaN or infinite.

    It runs before CheckpointHook in ``after_train_iter``, so no checkpoint
    is written after the bad iteration: the last one on disk (named in the
    message) holds the weights of before the divergence.

    Args:
        interval (int): check every this many iterations (1: every one; the
            check reads one scalar).
    """
    priority = 'ABOVE_NORMAL'

    def __init__(self, interval: int = 1) -> None:
        if interval < 1:
            raise ValueError(f'interval must be >= 1, got {interval}')
        self.interval = interval

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if not self.every_n_train_iters(runner, self.interval):
            return
        loss = (outputs or {}).get('loss')
        if loss is None:
            return
        value = float(loss.detach() if hasattr(loss, 'detach') else loss)
        if math.isfinite(value):
            return
        last_checkpoint = runner.message_hub.get_info('last_ckpt')
        raise InvalidLossError(
            f'loss is {value} at iteration {runner.iter + 1} (epoch '
            f'{runner.epoch + 1}, batch {batch_idx + 1}); training stopped. '
            + (f'The last checkpoint, {last_checkpoint}, was saved before it.'
               if last_checkpoint else 'No checkpoint was saved yet.') +
            ' Lower the learning rate or check the data, then resume from '
            'that checkpoint.')
