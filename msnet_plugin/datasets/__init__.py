"""Datasets of the plugin: synthetic motion videos for demos and tests, and
MMAction2's video and rawframe datasets with clear errors for bad samples."""
from .bad_sample_guard import (AnnotationLayout, BadSampleGuardMixin,
                               annotation_layout, annotation_problems,
                               label_problems, raw_data_list, sample_name)
from .checked_rawframe_dataset import CheckedRawframeDataset
from .checked_video_dataset import CheckedVideoDataset
from .synthetic_motion import (MOTION_CLASSES, MOTION_UNIT_STEPS,
                               SyntheticMotionDataset, generate_dataset_clip,
                               generate_motion_clip, generate_rawframe_dataset,
                               generate_video_dataset, motion_classes,
                               motion_flip_label_map, motion_step,
                               write_rawframes, write_video)

__all__ = [
    'AnnotationLayout', 'BadSampleGuardMixin', 'annotation_layout',
    'annotation_problems', 'label_problems', 'raw_data_list', 'sample_name',
    'CheckedRawframeDataset', 'CheckedVideoDataset',
    'MOTION_CLASSES', 'MOTION_UNIT_STEPS', 'SyntheticMotionDataset',
    'generate_dataset_clip', 'generate_motion_clip',
    'generate_rawframe_dataset', 'generate_video_dataset', 'motion_classes',
    'motion_flip_label_map', 'motion_step', 'write_rawframes', 'write_video'
]
