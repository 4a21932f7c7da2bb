"""Hooks of the plugin, registered in ``mmaction.registry.HOOKS``."""
from .check_invalid_loss_hook import CheckInvalidLossHook, InvalidLossError
from .checkpoint_match_hook import (CheckpointMatchHook,
                                    CheckpointMismatchError,
                                    describe_differences,
                                    state_dict_differences)
from .dataset_check_hook import DatasetCheckHook, guarded_datasets
from .random_state_hook import (RandomStateHook, capture_random_state,
                                restore_random_state)

__all__ = [
    'CheckInvalidLossHook', 'InvalidLossError', 'CheckpointMatchHook', 'CheckpointMismatchError', 'DatasetCheckHook',
    'RandomStateHook', 'capture_random_state', 'describe_differences',
    'guarded_datasets', 'restore_random_state', 'state_dict_differences'
]
