"""MotionSqueeze models, registered in ``mmaction.registry.MODELS``."""
from .correlation import local_correlation, local_correlation_reference
from .motion_squeeze import MotionSqueeze
from .ms_neck import MotionSqueezeNeck
from .ms_resnet_tsm import MSResNetTSM
from .soft_argmax import kernel_soft_argmax, plain_soft_argmax

__all__ = [
    'local_correlation', 'local_correlation_reference', 'kernel_soft_argmax',
    'plain_soft_argmax',
    'MotionSqueeze', 'MSResNetTSM', 'MotionSqueezeNeck'
]
