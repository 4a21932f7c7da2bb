"""MMAction2's VideoDataset with clear errors for bad videos."""
from mmaction.datasets import VideoDataset
from mmaction.registry import DATASETS

from .bad_sample_guard import BadSampleGuardMixin


@DATASETS.register_module()
class CheckedVideoDataset(BadSampleGuardMixin, VideoDataset):
    """``VideoDataset`` whose bad videos raise an error naming the file and
    its line in ``ann_file``, or are skipped and counted with
    ``skip_bad_samples=True``; see :class:`BadSampleGuardMixin`.

    Takes every ``VideoDataset`` argument plus ``skip_bad_samples`` and
    ``max_skips_in_a_row``. Samples are the same dicts as VideoDataset's,
    plus ``ann_line`` (1-based line number in ``ann_file``).
    """
