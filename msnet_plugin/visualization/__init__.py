"""Drawing MotionSqueeze's displacement and confidence maps."""
from .flow_comparison import compare_with_flow, flow_comparison_grid
from .motion_maps import (ROW_NAMES, MotionGridLayout, colour_panels,
                          colour_wheel, confidence_to_color, flow_to_color,
                          motion_gif_frames, motion_grid, save_gif, save_png)
from .motion_recorder import (MotionRecorder, motion_squeeze_modules,
                              split_clips)

__all__ = [
    'ROW_NAMES', 'MotionGridLayout', 'colour_panels', 'colour_wheel',
    'confidence_to_color', 'flow_to_color', 'motion_gif_frames',
    'motion_grid', 'save_gif', 'save_png', 'MotionRecorder',
    'motion_squeeze_modules', 'split_clips', 'compare_with_flow',
    'flow_comparison_grid'
]
