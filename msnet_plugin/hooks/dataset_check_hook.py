"""Checks of the data that belong to the whole run: labels against the
model's class count before training, unlabeled clips against the metrics
before validation and testing, and skipped bad samples after each epoch."""
import logging
from typing import Iterator

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmaction.registry import HOOKS

from ..datasets.bad_sample_guard import BadSampleGuardMixin
from ..errors import AnnotationError


def guarded_datasets(dataset) -> Iterator[BadSampleGuardMixin]:
    """The :class:`BadSampleGuardMixin` datasets in ``dataset``, looking
    inside mmengine's wrappers (``RepeatDataset``, ``ConcatDataset``...)."""
    if isinstance(dataset, BadSampleGuardMixin):
        yield dataset
    for inner in getattr(dataset, 'datasets', None) or ():
        yield from guarded_datasets(inner)
    inner = getattr(dataset, 'dataset', None)
    if inner is not None:
        yield from guarded_datasets(inner)


@HOOKS.register_module()
class DatasetCheckHook(Hook):
    """Before training: every label of the training and validation datasets
    must lie in ``0 .. model.cls_head.num_classes - 1`` (raises
    :class:`~msnet_plugin.errors.AnnotationError` naming the line). After
    each training epoch: logs how many bad samples ``skip_bad_samples=True``
    datasets skipped (a warning if any) and puts the count in the message
    hub as ``skipped_bad_samples``. Before validation and testing: a
    dataset with ``allow_unlabeled=True`` that holds clips without a label
    may only be run without metrics (e.g. ``test_evaluator=[]`` with
    ``tools/test.py --dump``), since a metric would count them as wrong
    answers (raises :class:`~msnet_plugin.errors.AnnotationError`).

    Works on datasets that mix in
    :class:`~msnet_plugin.datasets.BadSampleGuardMixin` (``CheckedVideoDataset``,
    ``CheckedRawframeDataset``, ``SyntheticMotionDataset``).
    """
    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        num_classes = getattr(getattr(model, 'cls_head', None), 'num_classes',
                              None)
        loaders = [runner.train_dataloader]
        if runner.val_loop is not None:
            loaders.append(runner.val_dataloader)
        for loader in loaders:
            for dataset in guarded_datasets(loader.dataset):
                dataset.check_labels(None, num_classes)

    def before_val(self, runner) -> None:
        self._refuse_scoring_unlabeled(runner.val_loop, 'val')

    def before_test(self, runner) -> None:
        self._refuse_scoring_unlabeled(runner.test_loop, 'test')

    @staticmethod
    def _refuse_scoring_unlabeled(loop, split: str) -> None:
        metrics = [
            type(metric).__name__
            for metric in getattr(loop.evaluator, 'metrics', [])
            if type(metric).__name__ != 'DumpResults'
        ]
        if not metrics:
            return
        for dataset in guarded_datasets(loop.dataloader.dataset):
            lines = dataset.unlabeled_lines()
            if lines:
                raise AnnotationError(
                    f'{len(lines)} clips of {dataset.ann_file} have no label '
                    f'(first: line {lines[0]}), and {", ".join(metrics)} '
                    'would count them as wrong answers; label them, or run '
                    f'without metrics: --cfg-options {split}_evaluator=[] '
                    '(tools/test.py --dump still saves the predictions)')

    def after_train_epoch(self, runner) -> None:
        datasets = [
            d for d in guarded_datasets(runner.train_dataloader.dataset)
            if d.skip_bad_samples
        ]
        if not datasets:
            return
        skipped = sum(d.skipped_samples() for d in datasets)
        for dataset in datasets:
            dataset.reset_skipped_samples()
        runner.message_hub.update_info('skipped_bad_samples', skipped)
        runner.logger.log(
            logging.WARNING if skipped else logging.INFO,
            f'Epoch {runner.epoch + 1}: skipped {skipped} bad training samples '
            '(skip_bad_samples=True); each is named in a warning above')
