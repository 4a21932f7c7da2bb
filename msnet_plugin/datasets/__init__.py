"""Datasets of the plugin: synthetic motion videos for demos and tests, and
MMAction2's video and rawframe datasets with clear errors for bad samples."""
from mmaction.registry import DATASETS

from .bad_sample_guard import (AnnotationError, AnnotationLayout,
                               BadSampleError, BadSampleGuardMixin,
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

# Registered here rather than with a decorator in synthetic_motion.py, so that
# running that module as a script (`python -m ...`) does not register the
# class a second time.
DATASETS.register_module(module=SyntheticMotionDataset)

__all__ = [
    'AnnotationError', 'AnnotationLayout', 'BadSampleError',
    'BadSampleGuardMixin', 'annotation_layout', 'annotation_problems',
    'label_problems', 'raw_data_list', 'sample_name',
    'CheckedRawframeDataset', 'CheckedVideoDataset',
    'MOTION_CLASSES', 'MOTION_UNIT_STEPS', 'SyntheticMotionDataset',
    'generate_dataset_clip', 'generate_motion_clip',
    'generate_rawframe_dataset', 'generate_video_dataset', 'motion_classes',
    'motion_flip_label_map', 'motion_step', 'write_rawframes', 'write_video'
]
