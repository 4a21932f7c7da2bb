"""Clear errors (or counted skips) for bad samples of an action dataset.

MMAction2's pipeline fails deep inside a dataloader worker when a video is
corrupt, empty or truncated, or a rawframe is missing, with messages such as
``RuntimeError: Error reading 0 bytes...`` that name neither the file nor its
line in the annotation list. :class:`BadSampleGuardMixin`, mixed into an
MMAction2 dataset, makes that error name both. With ``skip_bad_samples=True``
a bad sample is instead skipped with a warning (mmengine's ``BaseDataset``
then draws another sample, as it does for a ``None`` result) and counted;
:class:`~msnet_plugin.hooks.DatasetCheckHook` reports the count at the end of
each training epoch.

The mixin also checks the annotation list when the dataset is built: a
missing file, or a label outside ``0 .. num_classes - 1``, stops before
training starts.
"""
import logging
from typing import List, Optional

import torch
from mmengine.dataset import BaseDataset
from mmengine.fileio import exists, list_from_file
from mmengine.logging import print_log
from torch.utils.data import get_worker_info

# Skip counters: slot 0 for the main process, slot 1 + worker id for
# dataloader workers (modulo the rest), so that no two processes write one
# slot unless there are more workers than slots.
SKIP_COUNTER_SLOTS = 65


class BadSampleError(RuntimeError):
    """A sample could not be loaded; the message names its file and line."""


class AnnotationError(ValueError):
    """The annotation list is missing or holds an invalid label."""


def _labels_of(data_info: dict) -> List[int]:
    """The int labels of one annotation entry: one, or several for
    multi-class datasets."""
    label = data_info.get('label', -1)
    if isinstance(label, (list, tuple)):
        return [int(x) for x in label]
    return [int(label)]


class BadSampleGuardMixin:
    """Mixin for MMAction2 datasets (put it first among the bases).

    Args:
        skip_bad_samples (bool): False (default): a sample whose loading or
            transforms fail raises :class:`BadSampleError` naming the file
            and its line in the annotation list. True: the sample is skipped
            with a warning and counted (training only; a validation or test
            set must be complete, so ``test_mode=True`` refuses it).
        max_skips_in_a_row (int): with skipping on, this many failures in a
            row in one process raise :class:`BadSampleError`: that is a
            broken pipeline or data folder, not a few bad files.
        *args, **kwargs: the dataset's own arguments (``ann_file``,
            ``pipeline``, ``num_classes``...). When ``num_classes`` is given,
            every label must lie in ``0 .. num_classes - 1`` (``-1``, the
            "no label" MMAction2 writes for label-less lists, only in
            ``test_mode``).
    """

    def __init__(self,
                 *args,
                 skip_bad_samples: bool = False,
                 max_skips_in_a_row: int = 20,
                 **kwargs) -> None:
        self.skip_bad_samples = bool(skip_bad_samples)
        self.max_skips_in_a_row = int(max_skips_in_a_row)
        # Shared memory, so counts made in dataloader workers reach the main
        # process (through fork, and through torch's pickling under spawn).
        self.skip_counts = torch.zeros(
            SKIP_COUNTER_SLOTS, dtype=torch.int64).share_memory_()
        self._skips_in_a_row = 0
        super().__init__(*args, **kwargs)
        if self.skip_bad_samples and self.test_mode:
            raise ValueError(
                f'{type(self).__name__}: skip_bad_samples=True is for '
                'training only; a validation or test set must be complete '
                f'(ann_file {self.ann_file})')

    # ----------------------------------------------------------- annotations
    def load_data_list(self) -> List[dict]:
        """The dataset's own parsing, after checking that ``ann_file``
        exists; each entry gets ``ann_line``, its 1-based line number.

        Raises:
            AnnotationError: missing file, or a label out of range.
        """
        # MMAction2 calls ``exists(self.ann_file)`` but ignores the result.
        if not exists(self.ann_file):
            raise AnnotationError(
                f'{type(self).__name__}: annotation file not found: '
                f'{self.ann_file}')
        data_list = super().load_data_list()
        lines = list_from_file(self.ann_file)
        if len(lines) == len(data_list):  # one entry per line, in order
            for line_number, data_info in enumerate(data_list, 1):
                data_info['ann_line'] = line_number
        self.check_labels(data_list, getattr(self, 'num_classes', None))
        return data_list

    def check_labels(self, data_list: Optional[List[dict]],
                     num_classes: Optional[int]) -> None:
        """Raise :class:`AnnotationError` naming the first entry whose label
        is outside ``0 .. num_classes - 1``; nothing if ``num_classes`` is
        None. ``data_list`` None means this dataset's loaded entries."""
        if num_classes is None:
            return
        if data_list is None:  # the raw entries (MMAction2's get_data_info
            # turns multi-class labels into one-hot vectors)
            data_list = [
                BaseDataset.get_data_info(self, i) for i in range(len(self))
            ]
        lowest = -1 if self.test_mode else 0
        for index, data_info in enumerate(data_list):
            bad = [x for x in _labels_of(data_info)
                   if not lowest <= x < num_classes]
            if bad:
                raise AnnotationError(
                    f'label {bad[0]} of {self._sample_name(data_info)} '
                    f'(line {data_info.get("ann_line", index + 1)} of '
                    f'{self.ann_file}) is outside 0..{num_classes - 1} '
                    f'(num_classes={num_classes})')

    # --------------------------------------------------------------- samples
    @staticmethod
    def _sample_name(data_info: dict) -> str:
        """The file or frame folder of one sample."""
        for key in ('filename', 'frame_dir', 'audio_path'):
            if key in data_info:
                return str(data_info[key])
        return '<unnamed sample>'

    def describe_sample(self, index: int) -> str:
        """``'<file> (line L of <ann_file>)'`` for sample ``index``."""
        data_info = self.get_data_info(index)
        line = data_info.get('ann_line')
        where = (f'line {line} of {self.ann_file}'
                 if line is not None else f'sample {index} of {self.ann_file}')
        return f'{self._sample_name(data_info)} ({where})'

    def _count_skip(self) -> None:
        worker = get_worker_info()
        slot = 0 if worker is None else 1 + worker.id % (
            SKIP_COUNTER_SLOTS - 1)
        self.skip_counts[slot] += 1

    def skipped_samples(self) -> int:
        """Samples skipped since the last :meth:`reset_skipped_samples`, in
        all processes."""
        return int(self.skip_counts.sum())

    def reset_skipped_samples(self) -> None:
        self.skip_counts.zero_()

    def prepare_data(self, idx: int):
        """The dataset's own ``prepare_data``; a failure raises
        :class:`BadSampleError` naming the sample, or with
        ``skip_bad_samples`` returns None (mmengine then draws another)."""
        try:
            result = super().prepare_data(idx)
        except Exception as error:  # any failure of loading or transforms
            first_line = (str(error).strip().splitlines() or [''])[0]
            message = (f'cannot load {self.describe_sample(idx)}: '
                       f'{type(error).__name__}: {first_line}')
            if not self.skip_bad_samples:
                raise BadSampleError(message) from error
            self._skips_in_a_row += 1
            if self._skips_in_a_row >= self.max_skips_in_a_row:
                raise BadSampleError(
                    f'{self._skips_in_a_row} samples in a row failed, which '
                    'looks like a broken pipeline or data folder rather than '
                    f'a few bad files; the last: {message}') from error
            self._count_skip()
            print_log(f'skipped (skip_bad_samples=True): {message}',
                      logger='current', level=logging.WARNING)
            return None
        self._skips_in_a_row = 0
        return result
