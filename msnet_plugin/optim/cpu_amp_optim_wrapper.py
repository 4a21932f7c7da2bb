"""Mixed precision on the CPU: bfloat16 autocast in an mmengine optim wrapper.

mmengine 0.10.7's ``AmpOptimWrapper`` asserts a CUDA/NPU/MLU/MUSA device in
its constructor, although the autocast it uses (``mmengine.runner.amp``)
supports the CPU with bfloat16. This wrapper is that CPU path: the forward
pass (``optim_context``) runs under ``torch.autocast('cpu', torch.bfloat16)``;
backward and step are :class:`OptimWrapper`'s. bfloat16 has float32's
exponent range, so no loss scaling is needed (and none is done).
``tools/train.py --amp`` picks it when no CUDA device is available.

Under bfloat16 autocast a head's class scores are bfloat16, and MMAction2's
``BaseHead.loss_by_feat`` (1.2.0; no upstream issue found) computes its
training accuracy with ``cls_scores.detach().cpu().numpy()``, which fails:
``TypeError: Got unsupported ScalarType BFloat16``. So, within
``optim_context``, a forward hook on each of the model's heads hands
bfloat16 scores on as float32 (the loss is then computed in float32, as
autocast does for ``cross_entropy`` anyway). The hooks are removed when the
context ends; MMAction2's classes are not changed.
"""
from contextlib import ExitStack, contextmanager

import torch
import torch.nn as nn
from mmaction.models.heads.base import BaseHead
from mmaction.registry import OPTIM_WRAPPERS
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast


def _scores_as_float32(module, inputs, scores):
    """Forward hook: bfloat16 class scores (B, num_classes) as float32."""
    if isinstance(scores, torch.Tensor) and scores.dtype == torch.bfloat16:
        return scores.float()
    return None


@contextmanager
def _heads_return_float32(model: nn.Module):
    """Within the block, every :class:`BaseHead` in ``model`` returns
    bfloat16 scores as float32."""
    with ExitStack() as hooks:
        for module in model.modules():
            if isinstance(module, BaseHead):
                hooks.callback(
                    module.register_forward_hook(_scores_as_float32).remove)
        yield


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
        autocast on the CPU, with the heads' scores handed on as float32."""
        with super().optim_context(model), autocast(
                device_type='cpu',
                dtype=self.cast_dtype), _heads_return_float32(model):
            yield
