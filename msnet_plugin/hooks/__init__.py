"""Hooks of the plugin, registered in ``mmaction.registry.HOOKS``."""
from .check_invalid_loss_hook import CheckInvalidLossHook
from .checkpoint_match_hook import CheckpointMatchHook
from .dataset_check_hook import DatasetCheckHook, guarded_datasets
from .motion_vis_hook import MotionVisualizationHook
from .random_state_hook import RandomStateHook

__all__ = [
    'CheckInvalidLossHook', 'CheckpointMatchHook', 'DatasetCheckHook',
    'guarded_datasets', 'MotionVisualizationHook', 'RandomStateHook'
]
