"""A Recognizer2D as one module from frames to class scores, for export."""
import copy
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmaction.models.recognizers import Recognizer2D
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.registry import init_default_scope

from ..checkpoints import load_matching_checkpoint
from ..checks import check_segment_counts
from ..errors import ConfigError


class FramesToScores(nn.Module):
    """What MMAction2's test step computes for one view per clip, as a single
    ``forward`` that exporters and ``torch.compile`` can take.

    The recognizer's own code does every step: its data preprocessor's
    mean/std (and BGR->RGB flip when ``to_rgb``), ``extract_feat`` (backbone
    with MotionSqueeze, neck), the head (spatial pooling, fc, the segment
    consensus) and the head's ``average_clip`` (softmax for
    ``average_clips='prob'``, as in ``predict``).

    The data preprocessor's batching (``stack_batch``) is left out: it loops
    over the samples in Python, which would fix the batch size of an export.

    Args:
        recognizer (Recognizer2D): the model, in eval mode for export.
        num_segments (int): T, the frames per clip the model was built for.

    Shapes: frames (N, T, 3, H, W) float, as the test pipeline gives them
    (``FormatShape`` 'NCHW', one clip and one crop per sample, pixel values
    before normalisation) -> scores (N, num_classes).
    """

    def __init__(self, recognizer: Recognizer2D, num_segments: int):
        super().__init__()
        if not isinstance(recognizer, Recognizer2D):
            raise TypeError('FramesToScores wraps an MMAction2 Recognizer2D, '
                            f'got {type(recognizer).__name__}')
        if not recognizer.with_cls_head:
            raise ValueError('the recognizer has no cls_head, so there are '
                             'no class scores to export')
        self.recognizer = recognizer
        self.num_segments = num_segments
        test_cfg = recognizer.test_cfg
        if test_cfg is not None and test_cfg.get('max_testing_views'):
            # max_testing_views splits the batch in a Python loop (a memory
            # limit, same numbers); a traced graph would keep the example's
            # batch size, so it is switched off here.
            print_log('FramesToScores ignores test_cfg.max_testing_views',
                      logger='current')
            recognizer.test_cfg = {
                key: value
                for key, value in test_cfg.items()
                if key != 'max_testing_views'
            }

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, T, 3, H, W) frames -> (N, num_classes) class scores."""
        if frames.dim() != 5 or frames.shape[1] != self.num_segments:
            raise ValueError(
                f'FramesToScores expects (N, T={self.num_segments}, 3, H, W) '
                f'frames, got {tuple(frames.shape)}')
        preprocessor = self.recognizer.data_preprocessor
        inputs = frames.float()
        if getattr(preprocessor, 'to_rgb', False):
            inputs = inputs[:, :, [2, 1, 0]]
        if getattr(preprocessor, '_enable_normalize', False):
            inputs = (inputs - preprocessor.mean) / preprocessor.std
        feats, predict_kwargs = self.recognizer.extract_feat(
            inputs, test_mode=True)
        head = self.recognizer.cls_head
        clip_scores = head(feats, **predict_kwargs)
        # One view per sample, as predict() does for a batch of N samples.
        scores = head.average_clip(
            clip_scores, num_segs=clip_scores.shape[0] // frames.shape[0])
        return scores.reshape(frames.shape[0], -1)


def model_num_segments(recognizer: Recognizer2D) -> int:
    """T of a built recognizer: its backbone's ``num_segments`` (set in the
    config or the backbone's default; :func:`build_frames_to_scores` checks
    that the head and neck agree, with
    :func:`msnet_plugin.checks.check_segment_counts`)."""
    num_segments = getattr(recognizer.backbone, 'num_segments', None)
    if num_segments is None:
        raise ValueError(
            f'the backbone {type(recognizer.backbone).__name__} has no '
            'num_segments, so the frames per clip of the exported graph are '
            'unknown')
    return num_segments


def build_frames_to_scores(config,
                           checkpoint: Optional[str] = None,
                           num_segments: Optional[int] = None,
                           cfg_options: Optional[dict] = None,
                           device: str = 'cpu') -> FramesToScores:
    """Build a config's recognizer, load a checkpoint, wrap it for export.

    Args:
        config (str | Config): a config whose model is a Recognizer2D.
        checkpoint (str, optional): weights (mmengine checkpoint or state
            dict). None: the model's random initial weights (for tests).
            ``backbone.pretrained`` is never loaded: a checkpoint holds
            every weight.
        num_segments (int, optional): T the caller expects; a clear error if
            it is not the model's (``model.backbone.num_segments``, or the
            backbone's default when the config does not set it): the graph's
            reshapes are built for that T. None takes the model's.
        cfg_options (dict, optional): overrides merged into the config.
        device (str): where the model goes.

    Returns:
        FramesToScores: in eval mode; (N, T, 3, H, W) -> (N, num_classes).
    """
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    cfg = copy.deepcopy(cfg)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmaction'))
    check_segment_counts(cfg.model)
    model_cfg = copy.deepcopy(cfg.model)
    if 'pretrained' in model_cfg.get('backbone', {}):
        model_cfg.backbone.pretrained = None
    recognizer = MODELS.build(model_cfg)
    config_segments = model_num_segments(recognizer)
    if num_segments is not None and num_segments != config_segments:
        raise ConfigError(
            f'--num-segments {num_segments} does not match the config, which '
            f'builds the model for model.backbone.num_segments='
            f'{config_segments} (TSM shifts and MotionSqueeze pairs frames '
            'within groups of that size). Export with --num-segments '
            f'{config_segments}, or change the config, e.g. --cfg-options '
            f'model.backbone.num_segments={num_segments} '
            f'model.cls_head.num_segments={num_segments} (then the checkpoint '
            'must be trained with that many segments).')
    if checkpoint is None:
        recognizer.init_weights()
    else:
        load_matching_checkpoint(recognizer, checkpoint)
    return FramesToScores(recognizer, config_segments).to(device).eval()


def example_frames(num_segments: int, shape: Sequence[int],
                   batch_size: int = 1, seed: int = 0) -> torch.Tensor:
    """Random (batch_size, T, 3, H, W) frames with pixel values in [0, 255)
    for ``shape`` = (H, W)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((batch_size, num_segments, 3) + tuple(shape),
                      generator=generator) * 255
