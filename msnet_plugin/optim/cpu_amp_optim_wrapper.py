"""Mixed precision on the CPU: bfloat16 autocast in an mmengine optim wrapper.

mmengine 0.10.7's ``AmpOptimWrapper`` asserts a CUDA/NPU/MLU/MUSA device in
its constructor, although the autocast it uses (``mmengine.runner.amp``)
supports the CPU with bfloat16. This wrapper is that CPU path: the forward
pass (``optim_context``) runs under ``torch.autocast('cpu', torch.bfloat16)``;
backward and step are :class:`OptimWrapper`'s. bfloat16 has float32's
exponent range, so no loss scaling is needed (and none is done).
``tools/train.py --amp`` picks it when no CUDA device is available.
"""
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast
from mmaction.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAmpOptimWrapper(OptimWrapper):
    """:class:`OptimWrapper` whose forward runs in bfloat16 on the CPU.

    Args:
        dtype (str or torch.dtype): autocast dtype; only ``'bfloat16'`` is
            supported by CPU autocast.
        **kwargs: :class:`OptimWrapper` arguments (``optimizer``,
            ``clip_grad``, ``accumulative_counts``).
    """

    def __init__(self, dtype='bfloat16', **kwargs):
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None)
        if dtype is not torch.bfloat16:
            raise ValueError('CPUAmpOptimWrapper: CPU autocast supports only '
                             f'dtype bfloat16, got {dtype!r}')
        super().__init__(**kwargs)
        self.cast_dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        """OptimWrapper's context (gradient accumulation) plus bfloat16
        autocast on the CPU."""
        with super().optim_context(model), autocast(
                device_type='cpu', dtype=self.cast_dtype):
            yield
