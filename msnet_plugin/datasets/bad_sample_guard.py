"""Clear errors (or counted skips) for bad samples and annotation lists of an
action dataset.

MMAction2's pipeline fails deep inside a dataloader worker when a video is
corrupt, empty or truncated, or a rawframe is missing, with messages such as
``RuntimeError: Error reading 0 bytes...`` that name neither the file nor its
line in the annotation list. :class:`BadSampleGuardMixin`, mixed into an
MMAction2 dataset, makes that error name both. With ``skip_bad_samples=True``
a bad sample is instead skipped with a warning (mmengine's ``BaseDataset``
then draws another sample, as it does for a ``None`` result) and counted;
:class:`~msnet_plugin.hooks.DatasetCheckHook` reports the count at the end of
each training epoch.

The mixin also checks the annotation list when the dataset is built
(:func:`annotation_problems`, :func:`label_problems`): a missing or empty
file, a blank line, too many or too few columns, a frame count or label that
is not an integer, a clip without a label, a clip listed twice, or a label
outside ``0 .. num_classes - 1`` stops before training starts, naming the
line. ``tools/check_dataset.py`` lists every such problem with the same
functions.
"""
import logging
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from mmaction.datasets import RawframeDataset, VideoDataset
from mmengine.dataset import BaseDataset
from mmengine.fileio import exists, list_from_file
from mmengine.logging import print_log
from torch.utils.data import get_worker_info

from ..errors import AnnotationError, BadSampleError, ConfigError

# Skip counters: slot 0 for the main process, slot 1 + worker id for
# dataloader workers (modulo the rest), so that no two processes write one
# slot unless there are more workers than slots.
SKIP_COUNTER_SLOTS = 65
# MMAction2's label of a clip without one.
NO_LABEL = -1
UNLABELED_FIX = (
    'a clip without a label would count as a wrong answer in validation '
    'and testing; add its label, or, to only predict an unlabeled list '
    '(tools/test.py --dump), give the dataset allow_unlabeled=True')


class AnnotationLayout(NamedTuple):
    """The columns of one line of an MMAction2 annotation list.

    ``name``: what the first column names (``video`` or ``frame folder``);
    ``numbers``: the integer columns between it and the labels;
    ``multi_class``: one label or more per line; ``delimiter``: as
    ``str.split`` takes it (None: any run of whitespace).
    """
    name: str
    numbers: Tuple[str, ...]
    multi_class: bool
    delimiter: Optional[str]

    @property
    def usage(self) -> str:
        """The expected line, e.g. ``'<video> <label>'``."""
        labels = '<label> [<label> ...]' if self.multi_class else '<label>'
        return ' '.join([f'<{self.name}>'] +
                        [f'<{number}>' for number in self.numbers] + [labels])


def annotation_layout(dataset_class: type,
                      multi_class: bool = False,
                      with_offset: bool = False,
                      delimiter: Optional[str] = ' '
                      ) -> Optional[AnnotationLayout]:
    """The layout MMAction2's ``VideoDataset`` or ``RawframeDataset`` (or a
    subclass) reads with these arguments; None for other datasets."""
    if issubclass(dataset_class, RawframeDataset):
        numbers = (('offset', 'total frames') if with_offset else
                   ('total frames', ))
        return AnnotationLayout('frame folder', numbers, bool(multi_class),
                                None)
    if issubclass(dataset_class, VideoDataset):
        return AnnotationLayout('video', (), bool(multi_class), delimiter)
    return None


def _parse_int(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        return None


def annotation_problems(ann_file: str, layout: AnnotationLayout,
                        allow_unlabeled: bool = False) -> List[str]:
    """Every problem of an annotation list, one message each, naming the
    line: the file empty, a blank line, too many or too few columns, a
    number or label that is not an integer, a frame count below 1, a
    negative label, a clip without a label (a missing label column, or
    MMAction2's ``-1``, unless ``allow_unlabeled``), a clip listed twice
    (same name, and same offset in a ``with_offset`` list). Label ranges
    are :func:`label_problems`'."""
    lines = list_from_file(ann_file)
    if not any(line.strip() for line in lines):
        return [f'{ann_file} lists no clips (the file is empty); write one '
                f'line per clip: {layout.usage}']
    problems = []
    first_line_of: Dict[tuple, int] = {}
    for number, line in enumerate(lines, 1):
        where = f'line {number} of {ann_file}'
        if not line.strip():
            problems.append(f'{where} is blank; delete it (MMAction2 would '
                            'read it as a clip with no name)')
            continue
        columns = line.strip().split(layout.delimiter)
        least = 1 + len(layout.numbers)
        most = None if layout.multi_class else least + 1
        if len(columns) < least or (most is not None
                                    and len(columns) > most):
            hint = (' (two delimiters in a row make an empty column)'
                    if '' in columns else '')
            problems.append(
                f'{where} has {len(columns)} column(s), expected '
                f'{layout.usage}{hint}: {line!r}')
            continue
        values = {}
        for name, text in zip(layout.numbers, columns[1:least]):
            values[name] = _parse_int(text)
            if values[name] is None:
                problems.append(f'{where}: {name} {text!r} is not an '
                                f'integer (expected {layout.usage}): '
                                f'{line!r}')
        labels = [_parse_int(text) for text in columns[least:]]
        for text, label in zip(columns[least:], labels):
            if label is None:
                problems.append(f'{where}: label {text!r} is not an integer '
                                f'(expected {layout.usage}): {line!r}')
        if None in values.values() or None in labels:
            continue
        if values.get('total frames', 1) < 1:
            problems.append(f'{where}: total frames {values["total frames"]}'
                            f', a clip needs at least 1: {line!r}')
        if labels in ([], [NO_LABEL]):
            if not allow_unlabeled:
                problems.append(f'{where} has no label: {line!r}; '
                                f'{UNLABELED_FIX}')
        elif any(label < 0 for label in labels):
            problems.append(f'{where}: label {min(labels)} is negative '
                            f'(labels count from 0): {line!r}')
        key = (columns[0], values.get('offset'))
        if key in first_line_of:
            problems.append(
                f'{columns[0]} is listed twice in {ann_file}: lines '
                f'{first_line_of[key]} and {number}; delete one (a clip '
                'listed twice counts twice in training and evaluation)')
        else:
            first_line_of[key] = number
    return problems


def cannot_load_message(sample: str, error: BaseException) -> str:
    """``'cannot load <sample>: <ErrorType>: <first line of the error>'``,
    how a sample (a video, a rawframe folder) that failed to load is
    reported."""
    first_line = (str(error).strip().splitlines() or [''])[0]
    return f'cannot load {sample}: {type(error).__name__}: {first_line}'


def sample_name(data_info: dict) -> str:
    """The file or frame folder of one annotation entry."""
    for key in ('filename', 'frame_dir', 'audio_path'):
        if key in data_info:
            return str(data_info[key])
    return '<unnamed sample>'


def _labels_of(data_info: dict) -> List[int]:
    """The int labels of one annotation entry: one, or several for
    multi-class datasets."""
    label = data_info.get('label', NO_LABEL)
    if isinstance(label, (list, tuple)):
        return [int(x) for x in label]
    return [int(label)]


def label_problems(data_list: Sequence[dict], num_classes: int,
                   ann_file: str) -> List[str]:
    """One message per entry of ``data_list`` (MMAction2's annotation
    entries, before ``get_data_info`` turns multi-class labels into one-hot
    vectors) with a label outside ``0 .. num_classes - 1``; ``-1`` (no
    label) is :func:`annotation_problems`' to refuse or allow."""
    problems = []
    for index, data_info in enumerate(data_list):
        bad = [x for x in _labels_of(data_info)
               if x != NO_LABEL and not 0 <= x < num_classes]
        if bad:
            problems.append(
                f'label {bad[0]} of {sample_name(data_info)} (line '
                f'{data_info.get("ann_line", index + 1)} of {ann_file}) is '
                f'outside 0..{num_classes - 1} (num_classes={num_classes})')
    return problems


def raw_data_list(dataset: BaseDataset) -> List[dict]:
    """A built dataset's annotation entries as its ``load_data_list``
    returned them (MMAction2's ``get_data_info`` turns multi-class labels
    into one-hot vectors)."""
    return [BaseDataset.get_data_info(dataset, i) for i in range(len(dataset))]


def _annotation_error(problems: List[str]) -> AnnotationError:
    """The first problem, and how many more there are."""
    more = len(problems) - 1
    return AnnotationError(
        problems[0] +
        (f' (and {more} more problem{"s" if more > 1 else ""}: '
         'python tools/check_dataset.py CONFIG lists them all)'
         if more > 0 else ''))


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
        allow_unlabeled (bool): False (default): every clip of the list
            needs a label (a line without one, or with MMAction2's ``-1``,
            raises :class:`AnnotationError`), since accuracy would count it
            as a wrong answer. True (``test_mode`` only): clips without a
            label get ``-1``, to predict an unlabeled list with
            ``tools/test.py --dump`` and no metric;
            :class:`~msnet_plugin.hooks.DatasetCheckHook` refuses to
            evaluate such a set with a metric.
        *args, **kwargs: the dataset's own arguments (``ann_file``,
            ``pipeline``, ``num_classes``...). When ``num_classes`` is given,
            every label must lie in ``0 .. num_classes - 1``.
    """

    def __init__(self,
                 *args,
                 skip_bad_samples: bool = False,
                 max_skips_in_a_row: int = 20,
                 allow_unlabeled: bool = False,
                 **kwargs) -> None:
        self.skip_bad_samples = bool(skip_bad_samples)
        self.max_skips_in_a_row = int(max_skips_in_a_row)
        self.allow_unlabeled = bool(allow_unlabeled)
        # Shared memory, so counts made in dataloader workers reach the main
        # process (through fork, and through torch's pickling under spawn).
        self.skip_counts = torch.zeros(
            SKIP_COUNTER_SLOTS, dtype=torch.int64).share_memory_()
        self._skips_in_a_row = 0
        if self.allow_unlabeled and not kwargs.get('test_mode', False):
            raise ConfigError(
                f'{type(self).__name__}: allow_unlabeled=True is for test '
                'sets (test_mode=True) only; every training clip needs a '
                f'label (ann_file {kwargs.get("ann_file")})')
        super().__init__(*args, **kwargs)
        if self.skip_bad_samples and self.test_mode:
            raise ConfigError(
                f'{type(self).__name__}: skip_bad_samples=True is for '
                'training only; a validation or test set must be complete '
                f'(ann_file {self.ann_file})')

    # ----------------------------------------------------------- annotations
    def annotation_layout(self) -> Optional[AnnotationLayout]:
        """The columns this dataset reads from each line of ``ann_file``."""
        return annotation_layout(type(self),
                                 getattr(self, 'multi_class', False),
                                 getattr(self, 'with_offset', False),
                                 getattr(self, 'delimiter', ' '))

    def load_data_list(self) -> List[dict]:
        """The dataset's own parsing, after checking the annotation list
        (:func:`annotation_problems`); each entry gets ``ann_line``, its
        1-based line number.

        Raises:
            AnnotationError: missing, empty or malformed file, a clip
                without a label, a clip listed twice, or a label out of
                range; the message names the first problem and its line.
        """
        # MMAction2 calls ``exists(self.ann_file)`` but ignores the result.
        if not exists(self.ann_file):
            raise AnnotationError(
                f'{type(self).__name__}: annotation file not found: '
                f'{self.ann_file}')
        layout = self.annotation_layout()
        if layout is not None:
            problems = annotation_problems(self.ann_file, layout,
                                           self.allow_unlabeled)
            if problems:
                raise _annotation_error(problems)
        data_list = super().load_data_list()
        if not data_list:
            raise AnnotationError(f'{self.ann_file} lists no clips')
        lines = list_from_file(self.ann_file)
        if len(lines) == len(data_list):  # one entry per line, in order
            for line_number, data_info in enumerate(data_list, 1):
                data_info['ann_line'] = line_number
        self.check_labels(data_list, getattr(self, 'num_classes', None))
        return data_list

    def check_labels(self, data_list: Optional[List[dict]],
                     num_classes: Optional[int]) -> None:
        """Raise :class:`AnnotationError` naming the first entry whose label
        is outside ``0 .. num_classes - 1`` (:func:`label_problems`);
        nothing if ``num_classes`` is None. ``data_list`` None means this
        dataset's loaded entries."""
        if num_classes is None:
            return
        problems = label_problems(
            raw_data_list(self) if data_list is None else data_list,
            num_classes, self.ann_file)
        if problems:
            raise _annotation_error(problems)

    def unlabeled_lines(self) -> List[int]:
        """Line numbers (1-based) of the clips without a label (only an
        ``allow_unlabeled`` dataset has any)."""
        return [
            data_info.get('ann_line', index + 1)
            for index, data_info in enumerate(raw_data_list(self))
            if _labels_of(data_info) == [NO_LABEL]
        ]

    # --------------------------------------------------------------- samples
    def describe_sample(self, index: int) -> str:
        """``'<file> (line L of <ann_file>)'`` for sample ``index``."""
        data_info = self.get_data_info(index)
        line = data_info.get('ann_line')
        where = (f'line {line} of {self.ann_file}'
                 if line is not None else f'sample {index} of {self.ann_file}')
        return f'{sample_name(data_info)} ({where})'

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
            message = cannot_load_message(self.describe_sample(idx), error)
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
