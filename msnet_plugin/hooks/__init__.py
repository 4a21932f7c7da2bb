"""Hooks of the plugin, registered in ``mmaction.registry.HOOKS``."""
from .checkpoint_keys_report_hook import (CheckpointKeysReportHook,
                                          compare_checkpoint_keys)
from .motion_vis_hook import MotionVisualizationHook

__all__ = [
    'CheckpointKeysReportHook', 'compare_checkpoint_keys',
    'MotionVisualizationHook'
]
