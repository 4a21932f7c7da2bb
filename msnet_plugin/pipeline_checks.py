"""Check that a config's frame sampling gives the model whole clips.

TSM and MotionSqueeze regroup the (N*T, ...) batch of frames into clips of
``model.backbone.num_segments`` frames. ``SampleFrames`` gives ``clip_len x
num_clips`` frames per sample (twice that with ``twice_sample`` in test
mode). Training needs exactly ``num_segments`` of them; validation and
testing a multiple (each view is one clip, the scores are averaged). Any
other count ends in a shape error deep in the forward pass or the loss, or,
worse, mixes frames of different samples into one clip.
:func:`check_frames_per_clip` names the pipeline step, its frames and the
fix before anything is built (``tools/train.py``, ``tools/test.py``).
"""
from typing import Any, Iterable, Mapping, Optional

from .errors import ConfigError

#: Frame samplers whose frames per sample are clip_len x num_clips.
SAMPLERS = ('SampleFrames', 'DenseSampleFrames')


def _dataset(loader: Any) -> Optional[Mapping]:
    """The innermost dataset config of a dataloader config (through
    wrappers that hold one ``dataset``)."""
    dataset = loader.get('dataset') if isinstance(loader, Mapping) else None
    while isinstance(dataset, Mapping) and isinstance(
            dataset.get('dataset'), Mapping):
        dataset = dataset['dataset']
    return dataset if isinstance(dataset, Mapping) else None


def check_frames_per_clip(cfg, num_segments: Optional[int],
                          splits: Iterable[str]) -> None:
    """Raise :class:`ConfigError` if a ``SampleFrames`` step of the
    pipelines of ``splits`` gives a frame count the model cannot take:
    ``num_segments`` in training, a multiple of it otherwise. Nothing is
    checked without a ``num_segments`` (a TSN backbone takes any count)."""
    if not isinstance(num_segments, int) or num_segments < 1:
        return
    for split in splits:
        dataset = _dataset(cfg.get(f'{split}_dataloader', None))
        if dataset is None:
            continue
        for index, step in enumerate(dataset.get('pipeline') or ()):
            if not isinstance(step, Mapping) or str(step.get(
                    'type', '')).split('.')[-1] not in SAMPLERS:
                continue
            clip_len, num_clips = step.get('clip_len'), step.get(
                'num_clips', 1)
            if not isinstance(clip_len, int) or not isinstance(
                    num_clips, int):
                continue
            test_mode = bool(step.get('test_mode', False))
            views = 2 if test_mode and step.get('twice_sample') else 1
            frames = clip_len * num_clips * views
            if split == 'train' and not test_mode:
                if frames == num_segments:
                    continue
                need = f'exactly {num_segments}'
            else:
                if frames % num_segments == 0:
                    continue
                need = (f'a multiple of {num_segments} (each view is one '
                        'clip)')
            twice = ' x 2 (twice_sample)' if views == 2 else ''
            key = f'{split}_dataloader.dataset.pipeline.{index}'
            raise ConfigError(
                f'{key} ({step["type"]}) gives {frames} frames per sample '
                f'(clip_len={clip_len} x num_clips={num_clips}{twice}), but '
                f'model.backbone.num_segments is {num_segments}: the model '
                f'regroups the frames into clips of {num_segments}, so it '
                f'needs {need}; set num_clips (or num_segments) so that they '
                'agree')
