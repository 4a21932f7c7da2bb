"""MotionSqueeze as an MMAction2 neck, to add motion to models that exist."""
from typing import Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmaction.registry import MODELS

from .motion_squeeze import MotionSqueeze


@MODELS.register_module()
class MotionSqueezeNeck(nn.Module):
    """Adds MotionSqueeze motion features to a backbone's output.

    Works in both of MMAction2's recognizers:

    - Recognizer3D passes the backbone's (N, C, T, H, W) features; the neck
      returns fused features of the same shape, for I3DHead and the like.
      T must equal ``num_segments``.
    - Recognizer2D passes a list of (N, C, T, H, W) maps (a backbone with
      several ``out_indices``; the neck reads ``feature_index``), or, for a
      backbone that returns one (N*T, C, H, W) tensor, that tensor unpacked
      frame by frame, which the neck packs back. Recognizer2D then gives the
      head one segment per clip, so by default the neck averages the fused
      frames of each clip (the same features TSNHead's average consensus
      computes). With ``temporal_avg=False`` it returns every frame instead,
      for heads that regroup frames by their own ``num_segments`` (TSMHead).

    Args:
        in_channels (int): channels of the features it fuses into.
        num_segments (int): frames per clip at the neck's input.
        feature_index (int): which map of a multi-level input to use.
        temporal_avg (bool): in Recognizer2D, average each clip's frames.
        **ms_kwargs: further MotionSqueeze arguments (``reduced_channels``,
            ``patch_size``, ``sigma``, ``temperature``).
    """

    def __init__(self,
                 in_channels: int,
                 num_segments: int = 8,
                 feature_index: int = -1,
                 temporal_avg: bool = True,
                 **ms_kwargs):
        super().__init__()
        self.feature_index = feature_index
        self.temporal_avg = temporal_avg
        self.motion_squeeze = MotionSqueeze(
            in_channels, num_segments=num_segments, **ms_kwargs)

    @property
    def num_segments(self) -> int:
        return self.motion_squeeze.num_segments

    def init_weights(self) -> None:
        self.motion_squeeze.init_weights()

    def forward(self,
                x: Union[torch.Tensor, Sequence[torch.Tensor]],
                data_samples=None) -> Tuple[torch.Tensor, dict]:
        """Fuse motion features; returns ``(features, {})`` like any neck."""
        if isinstance(x, torch.Tensor):
            return self._forward_3d(x), dict()
        return self._forward_2d(list(x)), dict()

    def _forward_3d(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, C, T, H, W) -> (N, C, T, H, W)."""
        if clips.dim() != 5:
            raise ValueError(
                'MotionSqueezeNeck expects (N, C, T, H, W) features from a 3D '
                f'backbone, got {tuple(clips.shape)}')
        if clips.shape[2] != self.num_segments:
            raise ValueError(
                f'MotionSqueezeNeck got features with T={clips.shape[2]} '
                f'frames, but num_segments={self.num_segments}')
        batch, channels, frames, height, width = clips.shape
        fused = self.motion_squeeze(
            clips.transpose(1, 2).reshape(-1, channels, height, width))
        return fused.view(batch, frames, channels, height,
                          width).transpose(1, 2).contiguous()

    def _forward_2d(self, maps: list) -> torch.Tensor:
        """Recognizer2D input -> (N, C, 1, H, W), or (N*T, C, 1, H, W)."""
        if maps and maps[0].dim() == 4:
            # Recognizer2D reshaped each (C, H, W) frame of a single-tensor
            # output to (C / T, H, T, W); undo it and restack the frames.
            frames = torch.stack(
                [m.transpose(1, 2).reshape((-1, ) + m.shape[1::2])
                 for m in maps])
            frames_per_clip = maps[0].shape[2]
        elif maps and maps[0].dim() == 5:
            clips = maps[self.feature_index]
            frames_per_clip = clips.shape[2]
            frames = clips.transpose(1, 2).flatten(0, 1)
        else:
            raise ValueError(
                'MotionSqueezeNeck expects the backbone features that '
                'Recognizer2D passes to a neck, got '
                f'{[tuple(m.shape) for m in maps]}')
        fused = self.motion_squeeze(frames)
        if not self.temporal_avg:
            return fused.unsqueeze(2)
        return fused.view((-1, frames_per_clip) +
                          fused.shape[1:]).mean(dim=1).unsqueeze(2)
