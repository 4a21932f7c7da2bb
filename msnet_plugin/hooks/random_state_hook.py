"""Random number generator states in checkpoints, so that a resumed run
draws the same random numbers (dropout, augmentation with ``num_workers=0``)
as a run that was never interrupted."""
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmaction.registry import HOOKS


def capture_random_state() -> dict:
    """The states of Python's, numpy's and torch's (CPU and CUDA) global
    generators, as types that load under ``torch.load(weights_only=True)``
    (numpy's key array becomes an int64 tensor)."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = dict(
        python=random.getstate(),
        numpy=(name, torch.from_numpy(keys.astype(np.int64)), int(position),
               int(has_gauss), float(cached_gaussian)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict) -> None:
    """Set the global generators to ``state`` from
    :func:`capture_random_state` (CUDA only if the device count matches)."""
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    name, keys, position, has_gauss, cached_gaussian = state['numpy']
    np.random.set_state((name, keys.numpy().astype(np.uint32), position,
                         has_gauss, cached_gaussian))
    torch.set_rng_state(state['torch'])
    cuda_states = state.get('cuda')
    if cuda_states is not None and torch.cuda.is_available() and len(
            cuda_states) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda_states)


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
