"""MMAction2's RawframeDataset with clear errors for missing frames."""
from mmaction.datasets import RawframeDataset
from mmaction.registry import DATASETS

from .bad_sample_guard import BadSampleGuardMixin


@DATASETS.register_module()
class CheckedRawframeDataset(BadSampleGuardMixin, RawframeDataset):
    """``RawframeDataset`` whose missing or unreadable frames raise an error
    naming the frame folder and its line in ``ann_file``, or are skipped and
    counted with ``skip_bad_samples=True``; see :class:`BadSampleGuardMixin`.

    Takes every ``RawframeDataset`` argument plus ``skip_bad_samples`` and
    ``max_skips_in_a_row``. Samples are the same dicts as RawframeDataset's,
    plus ``ann_line`` (1-based line number in ``ann_file``).
    """
