"""Motion maps of a recognizer, read at its MotionSqueeze module.

:class:`MotionRecorder` registers a forward pre-hook on one MotionSqueeze
module of a model: while recording, every forward of the model (a test step,
a validation iteration) leaves the features that reach the MS module, and
:meth:`MotionRecorder.motion` calls ``estimate_motion`` on them. The backbone
runs once, as usual; only the MS correlation is computed again.
"""
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..models.motion_squeeze import MotionSqueeze


def motion_squeeze_modules(
        model: nn.Module) -> List[Tuple[str, MotionSqueeze]]:
    """(name, module) of every MotionSqueeze in ``model``, in module order."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, MotionSqueeze)]


class MotionRecorder:
    """Record the input of one MotionSqueeze module of ``model``.

    Use as a context manager: the hook is registered on entry and removed on
    exit. Only the last forward's input is kept.

    Args:
        model (nn.Module): a recognizer (possibly wrapped, e.g. in DDP) with
            at least one MotionSqueeze module.
        module_name (str, optional): which one, e.g. ``'backbone.ms_layer2'``
            (names as ``model.named_modules()`` gives them); defaults to the
            first.
    """

    def __init__(self, model: nn.Module, module_name: Optional[str] = None):
        modules = motion_squeeze_modules(model)
        if not modules:
            raise ValueError(
                f'{type(model).__name__} has no MotionSqueeze module, so '
                'there is no motion to draw; use an MSNet config (e.g. '
                "backbone type 'MSResNetTSM' or neck 'MotionSqueezeNeck')")
        names = [name for name, _ in modules]
        if module_name is None:
            module_name = names[0]
        if module_name not in names:
            raise ValueError(f'no MotionSqueeze module named {module_name!r};'
                             f' this model has {names}')
        self.module_name = module_name
        self.module: MotionSqueeze = dict(modules)[module_name]
        self._features: Optional[torch.Tensor] = None
        self._handle = None

    def _record(self, module: nn.Module, args: tuple) -> None:
        self._features = args[0].detach()

    def __enter__(self) -> 'MotionRecorder':
        self._handle = self.module.register_forward_pre_hook(self._record)
        return self

    def __exit__(self, *exc_info) -> None:
        self._handle.remove()
        self._handle = None
        self._features = None

    @torch.no_grad()
    def motion(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """``estimate_motion`` of the last recorded input, in eval mode.

        Returns:
            tuple[Tensor, Tensor]: displacement (B, 2, h, w) in feature cells
            (``estimate_motion``'s fractions times ``patch_size // 2``; one
            cell is the backbone's stride in pixels, 8 after layer2) and
            confidence (B, 1, h, w), B = frames the MS module saw (N * T), on
            the CPU.
        """
        if self._features is None:
            raise RuntimeError(
                f'{self.module_name} has not run since recording started: '
                'run the model (e.g. model.test_step) inside the recorder')
        was_training = self.module.training
        self.module.eval()  # never update BN statistics while drawing
        try:
            displacement, confidence = self.module.estimate_motion(
                self._features)
        finally:
            self.module.train(was_training)
        cells = displacement.float().cpu() * (self.module.patch_size // 2)
        return cells, confidence.float().cpu()


def split_clips(inputs: Sequence[torch.Tensor], displacement: torch.Tensor,
                confidence: torch.Tensor, num_segments: int
                ) -> Iterator[List[Tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """Per sample, the clips the MS module saw, with their RGB frames.

    Args:
        inputs (Sequence[Tensor]): the batch's raw inputs, one uint8 tensor
            per sample: (S, 3, H, W) for 2D recognizers (NCHW), or
            (clips, 3, T, H, W) (NCTHW).
        displacement (Tensor): (B * M, 2, h, w) from
            :meth:`MotionRecorder.motion`, M = MS frames per sample.
        confidence (Tensor): (B * M, 1, h, w).
        num_segments (int): T of the MS module; M is a multiple of it.

    Yields:
        list: per sample, one ``(frames (T, H, W, 3) uint8 RGB,
        displacement (T, 2, h, w), confidence (T, 1, h, w))`` per clip.
        When the backbone pools frames in time before MS (TSM's
        ``temporal_pool``), the RGB frames are subsampled to match.
    """
    per_sample = displacement.shape[0] // len(inputs)
    for index, sample in enumerate(inputs):
        if sample.dim() == 5:  # (clips, C, T, H, W) -> (clips * T, C, H, W)
            sample = sample.transpose(1, 2).flatten(0, 1)
        rgb = sample.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)
        step = max(len(rgb) // per_sample, 1)
        rgb = rgb[::step]
        start = index * per_sample
        yield [(rgb[first:first + num_segments],
                displacement[start + first:start + first +
                             num_segments].numpy(),
                confidence[start + first:start + first +
                           num_segments].numpy())
               for first in range(0, per_sample, num_segments)]
