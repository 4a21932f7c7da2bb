"""MotionSqueeze models, registered in ``mmaction.registry.MODELS``."""
from .correlation import (local_correlation, local_correlation_reference,
                          set_default_correlation_impl)
from .motion_squeeze import MotionSqueeze, kernel_soft_argmax
from .ms_neck import MotionSqueezeNeck
from .ms_resnet_tsm import MSResNetTSM
from .soft_argmax import plain_soft_argmax

__all__ = [
    'local_correlation', 'local_correlation_reference',
    'set_default_correlation_impl', 'kernel_soft_argmax', 'plain_soft_argmax',
    'MotionSqueeze', 'MSResNetTSM', 'MotionSqueezeNeck'
]
