"""Runner hooks of the plugin, registered in ``mmaction.registry.HOOKS``."""
from .motion_vis_hook import MotionVisualizationHook

__all__ = ['MotionVisualizationHook']
