"""The flip label map of the motion classes: mirror-image class pairs."""
import numpy as np
import pytest
from test_synthetic_motion import estimate_step

from msnet_plugin.datasets import (MOTION_CLASSES, generate_dataset_clip,
                                   motion_flip_label_map, motion_step)


@pytest.mark.parametrize('num_classes,expected', [
    (4, {0: 1, 1: 0}),
    (8, {0: 1, 1: 0, 4: 5, 5: 4, 6: 7, 7: 6}),
])
def test_flipped_clip_moves_as_the_mapped_label(num_classes, expected):
    flip_map = motion_flip_label_map(num_classes)
    assert flip_map == expected
    for index in range(num_classes):
        frames, label = generate_dataset_clip(0, index, 3, 32, 4, num_classes)
        mirrored = np.ascontiguousarray(frames[:, :, ::-1])
        flipped_label = flip_map.get(label, label)
        assert estimate_step(mirrored[0], mirrored[1]) == motion_step(
            MOTION_CLASSES[flipped_label], 4)


def test_flip_label_map_names_bad_class_counts():
    with pytest.raises(ValueError, match='num_classes must be one of'):
        motion_flip_label_map(6)
