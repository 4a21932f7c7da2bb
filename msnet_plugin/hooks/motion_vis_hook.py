"""Send the motion maps of a few validation clips to the visualizer."""
from typing import Optional, Sequence

from mmaction.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook

from ..visualization import MotionRecorder, motion_grid, split_clips


@HOOKS.register_module()
class MotionVisualizationHook(Hook):
    """Every ``interval`` validations, draw the motion of ``num_clips`` clips.

    While the first validation batches run, a :class:`MotionRecorder` keeps
    the features that reach the MotionSqueeze module (no extra forward);
    for each of the first ``num_clips`` validation clips the hook draws
    :func:`~msnet_plugin.visualization.motion_grid` (RGB frames, displacement
    and confidence maps) and sends it to ``runner.visualizer.add_image`` as
    ``motion_clip{k}`` at step ``runner.iter`` (training iterations done,
    so epoch- and iteration-based training both get one image per
    validation). Every backend of the config's visualizer gets
    it: with MMAction2's default runtime, PNGs under
    ``<work_dir>/<timestamp>/vis_data/vis_image/``; add
    ``dict(type='TensorboardVisBackend')`` to ``visualizer.vis_backends`` for
    TensorBoard. Only the main process draws.

    Args:
        interval (int): draw at every ``interval``-th validation (counted
            from the start of this run, resumed runs included).
        num_clips (int): clips drawn each time (the first ones of the
            validation loader).
        module_name (str, optional): the MotionSqueeze module to read, e.g.
            ``'backbone.ms_layer2'``; defaults to the first one.
        full_saturation (float): displacement, in feature cells, drawn with
            full colour.
    """

    priority = 'LOW'

    def __init__(self,
                 interval: int = 1,
                 num_clips: int = 2,
                 module_name: Optional[str] = None,
                 full_saturation: float = 1.0):
        for name, value in (('interval', interval), ('num_clips', num_clips)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f'{name} must be a positive int, got '
                                 f'{value!r}')
        if not full_saturation > 0:
            raise ValueError('full_saturation must be positive, got '
                             f'{full_saturation!r}')
        self.interval = interval
        self.num_clips = num_clips
        self.module_name = module_name
        self.full_saturation = full_saturation
        self._validations = 0
        self._recorder: Optional[MotionRecorder] = None
        self._drawn = 0

    def before_run(self, runner) -> None:
        # Name a model without MotionSqueeze (or a wrong module_name) now,
        # not after the first training epoch.
        MotionRecorder(runner.model, self.module_name)

    def before_val_epoch(self, runner) -> None:
        self._validations += 1
        if self._validations % self.interval or not is_main_process():
            return
        self._recorder = MotionRecorder(runner.model, self.module_name)
        self._recorder.__enter__()
        self._drawn = 0

    def after_val_iter(self,
                       runner,
                       batch_idx: int,
                       data_batch: Optional[dict] = None,
                       outputs: Optional[Sequence] = None) -> None:
        if self._recorder is None:
            return
        displacement, confidence = self._recorder.motion()
        classes = runner.val_dataloader.dataset.metainfo.get('classes')
        samples = split_clips(data_batch['inputs'], displacement, confidence,
                              self._recorder.module.num_segments)
        for clips, data_sample in zip(samples, outputs):
            frames, clip_displacement, clip_confidence = clips[0]
            title = (f'epoch {runner.epoch}, iter {runner.iter}, clip '
                     f'{self._drawn}: {_label_text(data_sample, classes)}')
            runner.visualizer.add_image(
                f'motion_clip{self._drawn}',
                motion_grid(frames, clip_displacement, clip_confidence,
                            self.full_saturation, title),
                step=runner.iter)
            self._drawn += 1
            if self._drawn == self.num_clips:
                self._stop_recording()
                return

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._stop_recording()

    def _stop_recording(self) -> None:
        if self._recorder is not None:
            self._recorder.__exit__(None, None, None)
            self._recorder = None


def _label_text(data_sample, classes: Optional[Sequence[str]]) -> str:
    """'true X, predicted Y (score)' of an ActionDataSample."""

    def name(index: int) -> str:
        return classes[index] if classes else str(index)

    predicted = int(data_sample.pred_score.argmax())
    text = (f'predicted {name(predicted)} '
            f'({float(data_sample.pred_score[predicted]):.2f})')
    if 'gt_label' in data_sample:
        text = f'true {name(int(data_sample.gt_label))}, ' + text
    return text
