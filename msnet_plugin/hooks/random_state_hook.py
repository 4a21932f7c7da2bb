"""Random number generator states in checkpoints, so that a resumed run
draws the same random numbers (dropout, augmentation with ``num_workers=0``)
as a run that was never interrupted."""
from typing import Optional

from mmengine.hooks import Hook
from mmaction.registry import HOOKS

from ..random_state import capture_random_state, restore_random_state


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the global random states in each checkpoint (``rng_state``) and
    restore them when training resumes from it.

    Each training epoch also starts from the states the previous training
    epoch ended with, so validation between epochs (which draws from the
    same generators) does not change training's random numbers: a run
    resumed from the checkpoint of epoch e then draws exactly what the
    uninterrupted run drew. Exact equality also needs dataloader workers
    that do not outlive an epoch (``num_workers=0``, or
    ``persistent_workers=False``: mmengine seeds each new worker from the
    run's seed), and ``randomness.deterministic=True`` on a GPU.
    """
    # Before CheckpointHook (VERY_LOW) in after_train_epoch.
    priority = 'NORMAL'

    def __init__(self) -> None:
        self._epoch_end_state: Optional[dict] = None
        self._loaded: Optional[tuple] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint['rng_state'] = capture_random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta', {})
        if 'rng_state' in checkpoint:
            self._loaded = (meta.get('iter'), checkpoint['rng_state'])

    def before_train(self, runner) -> None:
        """Restore the loaded states if the run resumed (``load_from`` for
        fine-tuning starts at iteration 0 and keeps its own seed)."""
        if self._loaded is not None:
            loaded_iter, state = self._loaded
            if loaded_iter and loaded_iter == runner.iter:
                restore_random_state(state)
                self._epoch_end_state = state
            self._loaded = None

    def after_train_epoch(self, runner) -> None:
        self._epoch_end_state = capture_random_state()

    def before_train_epoch(self, runner) -> None:
        if self._epoch_end_state is not None:
            restore_random_state(self._epoch_end_state)
