"""The global random number generators' states (Python's, numpy's and
torch's), as values a checkpoint stores and loads under
``torch.load(weights_only=True)``: RandomStateHook saves them so a resumed
run draws what an uninterrupted one drew, and the motion benchmark keeps
training's draws apart from validation's."""
import random

import numpy as np
import torch


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
