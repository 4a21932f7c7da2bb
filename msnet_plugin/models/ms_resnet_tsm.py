"""MSNet backbone: MMAction2's TSM ResNet with MotionSqueeze between stages."""
from typing import Iterator, Optional, Sequence

import torch
import torch.nn as nn
from mmaction.models.backbones.resnet import ResNet
from mmaction.models.backbones.resnet_tsm import ResNetTSM
from mmaction.registry import MODELS

from ..errors import SegmentCountError
# (importing motion_squeeze registers MotionSqueeze, which ms_cfg builds)
from .motion_squeeze import check_frame_batch


@MODELS.register_module()
class MSResNetTSM(ResNetTSM):
    """TSM ResNet with a MotionSqueeze module after chosen residual stages.

    Takes every :class:`ResNetTSM` argument. The paper's MSNet-R50 is
    ``MSResNetTSM(depth=50, num_segments=8, shift_div=8)``: one MS after
    layer2, whose output (x plus motion features) feeds layer3.

    Args:
        depth (int): ResNet depth (18, 34, 50, 101, 152).
        ms_stages (Sequence[int]): indices of the residual stages after which
            a MotionSqueeze goes (0 = layer1). Defaults to ``(1,)``, after
            layer2 as in the paper.
        ms_cfg (dict, optional): the config of each MS module, built through
            ``mmaction.registry.MODELS``: ``type`` (default
            ``'MotionSqueeze'``; a registered subclass works too) and
            overrides of its arguments (``reduced_channels``, ``patch_size``,
            ``sigma``, ``temperature``, and the ablations
            ``use_confidence``, ``soft_argmax``, ``motion_input``);
            ``in_channels`` and ``num_segments`` follow the backbone.
        **kwargs: arguments of :class:`ResNetTSM`.

    Shapes: (N*T, 3, H, W) frames in, the same features as ResNetTSM out.
    MS modules are named ``ms_layer{i + 1}`` (``ms_layer2`` for the paper's).
    """

    def __init__(self,
                 depth: int,
                 ms_stages: Sequence[int] = (1, ),
                 ms_cfg: Optional[dict] = None,
                 **kwargs):
        super().__init__(depth, **kwargs)
        ms_cfg = dict(ms_cfg or {})
        self.ms_stages = tuple(ms_stages)
        for stage in self.ms_stages:
            if (not isinstance(stage, int) or stage < 0
                    or stage >= self.num_stages):
                raise ValueError(
                    f'ms_stages: stage index {stage!r} does not exist; this '
                    f'ResNet has stages 0..{self.num_stages - 1} (0 = layer1)')
        if len(set(self.ms_stages)) != len(self.ms_stages):
            raise ValueError(f'ms_stages has duplicates: {self.ms_stages}')
        for stage in self.ms_stages:
            self.add_module(self.ms_name(stage),
                            self._build_ms(stage, dict(ms_cfg)))

    @staticmethod
    def ms_name(stage: int) -> str:
        """Attribute name of the MS placed after stage ``stage``."""
        return f'ms_layer{stage + 1}'

    @staticmethod
    def segments_after_stage(num_segments: int, temporal_pool: bool,
                             stage: int) -> int:
        """Frames per clip in the output of stage ``stage`` (0 = layer1):
        ResNetTSM's temporal pool halves them after layer1."""
        return num_segments // 2 if temporal_pool and stage >= 1 \
            else num_segments

    @classmethod
    def check_ms_segments(cls, ms_segments: Optional[int], num_segments: int,
                          temporal_pool: bool, stage: int) -> None:
        """Raise :class:`~msnet_plugin.errors.SegmentCountError` (a
        ValueError) if ``ms_cfg``'s ``ms_segments`` (None: not set) is not
        the backbone's segment count at stage ``stage``, where its
        MotionSqueeze goes; ``tools/train.py`` and ``tools/test.py`` ask
        before building (:func:`msnet_plugin.checks.check_segment_counts`).
        """
        expected = cls.segments_after_stage(num_segments, temporal_pool,
                                            stage)
        if ms_segments is None or ms_segments == expected:
            return
        pooled = ' with temporal_pool' if expected != num_segments else ''
        raise SegmentCountError(
            'segment counts disagree: model.backbone.ms_cfg.num_segments='
            f'{ms_segments}, but model.backbone.num_segments={num_segments}'
            f'{pooled} gives {expected} at the MS stage; leave num_segments '
            'out of ms_cfg, it follows the backbone')

    def _build_ms(self, stage: int, ms_cfg: dict) -> nn.Module:
        stage_channels = self.block.expansion * 64 * 2**stage
        in_channels = ms_cfg.pop('in_channels', stage_channels)
        if in_channels != stage_channels:
            raise ValueError(
                f'ms_cfg in_channels={in_channels} does not match layer'
                f'{stage + 1} of ResNet-{self.depth}, which outputs '
                f'{stage_channels} channels')
        num_segments = ms_cfg.pop('num_segments', None)
        self.check_ms_segments(num_segments, self.num_segments,
                               self.temporal_pool, stage)
        num_segments = self.segments_after_stage(self.num_segments,
                                                 self.temporal_pool, stage)
        ms_cfg.setdefault('type', 'MotionSqueeze')
        ms_cfg.setdefault('with_cp', self.with_cp)  # the backbone's, by default
        return MODELS.build(
            dict(ms_cfg, in_channels=in_channels, num_segments=num_segments))

    def motion_squeezes(self) -> Iterator[nn.Module]:
        """The MS modules, in stage order."""
        for stage in sorted(self.ms_stages):
            yield getattr(self, self.ms_name(stage))

    def init_weights(self) -> None:
        """ResNetTSM's init, then the paper's init for every MS module.

        ResNetTSM loads 2D ImageNet weights where names match and leaves new
        modules as constructed; MS is re-initialised explicitly so it gets
        the paper's init whatever the ResNet loads. ``pretrained=None``
        trains from scratch (ResNetTSM would try to load None).
        """
        if self.pretrained is None:
            ResNet.init_weights(self)
        else:
            super().init_weights()
        for motion_squeeze in self.motion_squeezes():
            motion_squeeze.init_weights()

    def forward(self, x: torch.Tensor):
        """(N*T, 3, H, W) frames -> the ResNet features of ``out_indices``."""
        check_frame_batch('MSResNetTSM', x, self.num_segments, 'frames')
        x = self.maxpool(self.conv1(x))
        outs = []
        for stage, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)
            if stage in self.ms_stages:
                x = getattr(self, self.ms_name(stage))(x)
            if stage in self.out_indices:
                outs.append(x)
        return outs[0] if len(outs) == 1 else tuple(outs)

