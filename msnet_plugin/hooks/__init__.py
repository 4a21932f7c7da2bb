"""Hooks of the plugin, registered in ``mmaction.registry.HOOKS``."""
from .check_invalid_loss_hook import CheckInvalidLossHook, InvalidLossError
from .checkpoint_match_hook import (CheckpointMatchHook,
                                    CheckpointMismatchError,
                                    compare_checkpoint_keys,
                                    describe_differences)
from .dataset_check_hook import DatasetCheckHook, guarded_datasets
from .motion_vis_hook import MotionVisualizationHook
from .random_state_hook import (RandomStateHook, capture_random_state,
                                restore_random_state)

__all__ = [
    'CheckInvalidLossHook', 'InvalidLossError', 'compare_checkpoint_keys',
    'CheckpointMatchHook', 'CheckpointMismatchError', 'describe_differences',
    'DatasetCheckHook', 'guarded_datasets',
    'MotionVisualizationHook', 'RandomStateHook', 'capture_random_state',
    'restore_random_state'
]
