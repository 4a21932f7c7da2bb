"""The MotionSqueeze module (Kwon et al., ECCV 2020, arXiv 2007.09933).

Features of adjacent frames are correlated over a local window; kernel
soft-argmax squeezes the correlation into a displacement map (u, v) and a
confidence map, and four depthwise-separable stages turn those three channels
into features added back to the input.
"""
import json

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmaction.registry import MODELS

from .compiled_inference import (motion_squeeze_inference, runs_as_one_op,
                                 state_tensors)
from .correlation import check_impl_name, local_correlation
from .folded_blocks import folded_conv_bn_relu
from .recomputed_tail import recomputed_conv_bn_relu
from .soft_argmax import kernel_soft_argmax, plain_soft_argmax
from .tracing import is_exporting, is_exporting_or_compiling, static_sizes

SOFT_ARGMAX_MODES = ('kernel', 'plain')
MOTION_INPUTS = ('displacement', 'correlation')


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 1,
                 groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU, padded to keep the spatial size."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size,
                  padding=kernel_size // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def depthwise_separable(in_channels: int, out_channels: int,
                        kernel_size: int) -> nn.Sequential:
    """Depthwise conv + BN + ReLU, then pointwise conv + BN + ReLU."""
    return nn.Sequential(
        conv_bn_relu(in_channels, in_channels, kernel_size,
                     groups=in_channels),
        conv_bn_relu(in_channels, out_channels))


def check_frame_batch(owner: str, x: torch.Tensor, num_segments: int,
                      holds: str = 'features') -> None:
    """Raise ValueError unless ``x`` is (N*T, C, H, W) with N*T a multiple
    of ``num_segments`` (T): the input rule of ``owner`` (a class name, for
    the message), whose input ``holds`` frames or features."""
    if x.dim() != 4:
        raise ValueError(f'{owner} expects (N*T, C, H, W) {holds}, got a '
                         f'{x.dim()}-D tensor {tuple(x.shape)}')
    if x.shape[0] % num_segments != 0:
        raise ValueError(
            f'{owner} got {x.shape[0]} frames, not a multiple of '
            f'num_segments={num_segments}')


def l2_normalize_channels(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / sqrt(sum_c x^2 + eps) for (B, C, H, W) x, as the authors do."""
    return x / torch.sqrt(x.pow(2).sum(dim=1, keepdim=True) + eps)


@MODELS.register_module()
class MotionSqueeze(nn.Module):
    """MotionSqueeze: motion features from adjacent frames, added to ``x``.

    Args:
        in_channels (int): C of the features it reads and adds to (512 after
            ResNet-50 layer2, 128 after ResNet-18 layer2).
        num_segments (int): T, frames per clip; inputs are (N*T, C, H, W).
        reduced_channels (int): channels after the 1x1 reduction (64).
        patch_size (int): side of the correlation window, odd (15: -7..7).
        sigma (float): std of the kernel soft-argmax Gaussian (5 grid units).
        temperature (float): softmax temperature of the soft-argmax (100).
        out_channels (int, optional): channels of the motion features;
            defaults to ``in_channels`` (they are added to the input).
        use_confidence (bool): feed the confidence map to the transformation
            (paper: True); False is the paper's "without confidence" ablation
            (the first stage then reads 2 channels).
        soft_argmax (str): ``'kernel'`` (paper) or ``'plain'``, a softmax over
            the whole window without the Gaussian (ablation).
        motion_input (str): what the transformation reads: ``'displacement'``
            (paper: [u, v, confidence]) or ``'correlation'``, the (ReLU'd)
            correlation itself, patch_size^2 channels (ablation; then
            ``use_confidence`` and ``soft_argmax`` play no part).
        correlation_impl (str): the correlation kernel, one of
            ``msnet_plugin.models.correlation.IMPLEMENTATIONS``; ``'auto'``
            (the default) picks the fastest one that works on the device
            (see :mod:`msnet_plugin.models.correlation`).
        with_cp (bool): activation checkpointing, as MMAction2's ResNet
            blocks do it: during training only the input is kept and the
            module's forward runs again in backward (less memory, more time;
            same outputs and gradients). As with those blocks, BatchNorm's
            running statistics then see each batch twice.
        zero_init_residual (bool): start with no contribution (False: the
            paper's init). True adds a per-channel scale of the motion
            features before they are added, ``residual_scale``, initialised
            to 0 (a 1x1 depthwise conv, so that optimizer constructors that
            sort parameters by layer type, such as MMAction2's
            ``TSMOptimWrapperConstructor``, train it): the module is then exactly the identity at
            initialisation, so a network warm-started from a checkpoint
            without MS (MMAction2's TSM) gives that checkpoint's outputs
            until the first step. The scale gets a gradient at once and the
            rest of the module from the second step on. (Zeroing the last
            BN's weight, as ResNet's ``zero_init_residual`` does, would
            freeze the module here: the ReLU after that BN passes no gradient
            at 0.)
    """

    def __init__(self,
                 in_channels: int,
                 num_segments: int = 8,
                 reduced_channels: int = 64,
                 patch_size: int = 15,
                 sigma: float = 5.0,
                 temperature: float = 100.0,
                 out_channels: int = None,
                 use_confidence: bool = True,
                 soft_argmax: str = 'kernel',
                 motion_input: str = 'displacement',
                 correlation_impl: str = 'auto',
                 with_cp: bool = False,
                 zero_init_residual: bool = False):
        super().__init__()
        if soft_argmax not in SOFT_ARGMAX_MODES:
            raise ValueError(f'soft_argmax must be one of {SOFT_ARGMAX_MODES}'
                             f', got {soft_argmax!r}')
        if motion_input not in MOTION_INPUTS:
            raise ValueError(f'motion_input must be one of {MOTION_INPUTS}, '
                             f'got {motion_input!r}')
        check_impl_name(correlation_impl)
        if not isinstance(with_cp, bool):
            raise ValueError(f'with_cp must be True or False, got {with_cp!r}')
        if not isinstance(zero_init_residual, bool):
            raise ValueError('zero_init_residual must be True or False, got '
                             f'{zero_init_residual!r}')
        self.correlation_impl = correlation_impl
        self.with_cp = with_cp
        out_channels = in_channels if out_channels is None else out_channels
        if num_segments < 2:
            raise ValueError('MotionSqueeze needs num_segments >= 2 (it pairs '
                             f'adjacent frames), got {num_segments}')
        if patch_size < 3 or patch_size % 2 == 0:
            raise ValueError('patch_size must be an odd number >= 3 (the '
                             'window -d..d, d = patch_size // 2), got '
                             f'{patch_size}')
        for name, value in (('in_channels', in_channels),
                            ('reduced_channels', reduced_channels),
                            ('out_channels', out_channels), ('sigma', sigma),
                            ('temperature', temperature)):
            if value <= 0:
                raise ValueError(f'{name} must be positive, got {value}')
        self.in_channels = in_channels
        self.num_segments = num_segments
        self.reduced_channels = reduced_channels
        self.patch_size = patch_size
        self.sigma = sigma
        self.temperature = temperature
        self.out_channels = out_channels
        self.use_confidence = bool(use_confidence)
        self.soft_argmax = soft_argmax
        self.motion_input = motion_input
        self.reduce = conv_bn_relu(in_channels, reduced_channels)
        self.transform = nn.Sequential(
            depthwise_separable(self.motion_channels, 16, 7),
            depthwise_separable(16, 32, 3),
            depthwise_separable(32, 64, 3),
            depthwise_separable(64, out_channels, 3))
        self.zero_init_residual = zero_init_residual
        # What builds this module again: compiled inference runs it as one op
        # (.compiled_inference), which rebuilds it from these.
        self._arguments = json.dumps(dict(
            in_channels=in_channels, num_segments=num_segments,
            reduced_channels=reduced_channels, patch_size=patch_size,
            sigma=sigma, temperature=temperature, out_channels=out_channels,
            use_confidence=use_confidence, soft_argmax=soft_argmax,
            motion_input=motion_input, correlation_impl=correlation_impl,
            zero_init_residual=zero_init_residual))
        if zero_init_residual:
            self.residual_scale = nn.Conv2d(out_channels, out_channels, 1,
                                            groups=out_channels, bias=False)
        self.init_weights()

    @property
    def motion_channels(self) -> int:
        """Channels the transformation reads: 3 (u, v, confidence) as in the
        paper, 2 without confidence, patch_size^2 for correlation input."""
        if self.motion_input == 'correlation':
            return self.patch_size * self.patch_size
        return 3 if self.use_confidence else 2

    def init_weights(self) -> None:
        """The paper's init: Kaiming-normal (fan_out) convs, BN 1 and 0;
        with ``zero_init_residual``, ``residual_scale`` 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(
                    module.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.zero_init_residual:
            nn.init.zeros_(self.residual_scale.weight)

    def _check_input(self, x: torch.Tensor) -> None:
        check_frame_batch('MotionSqueeze', x, self.num_segments)
        if x.shape[1] != self.in_channels:
            raise ValueError(f'MotionSqueeze was built for in_channels='
                             f'{self.in_channels}, got {x.shape[1]} channels')

    def estimate_motion(self, x: torch.Tensor):
        """Displacement and confidence maps between adjacent frames.

        Args:
            x (Tensor): (N*T, C, H, W) features, T = num_segments.

        Returns:
            tuple[Tensor, Tensor]: displacement (N*T, 2, H, W): channel 0
            horizontal, positive when content moves right (+x) from frame t to
            t+1; channel 1 vertical, positive downwards; both divided by the
            maximum displacement (patch_size // 2), so in [-1, 1]. Confidence
            (N*T, 1, H, W): the peak correlation. Frame t holds the pair
            (t, t+1); the last frame repeats the previous pair's maps.
        """
        correlation = self._pair_correlation(x)
        if self.soft_argmax == 'plain':
            displacement, confidence = plain_soft_argmax(
                correlation, self.patch_size, self.temperature)
        else:
            displacement, confidence = kernel_soft_argmax(
                correlation, self.patch_size, self.sigma, self.temperature)
        return (self._repeat_last_pair(displacement),
                self._repeat_last_pair(confidence))

    def _pair_correlation(self, x: torch.Tensor) -> torch.Tensor:
        """(N*T, C, H, W) -> (N*(T-1), patch_size^2, H, W) ReLU'd correlation
        of the reduced, L2-normalised features of frames t and t+1."""
        self._check_input(x)
        features = self._conv_bn_relu(self.reduce, x)
        channels, height, width = static_sizes(features)
        features = l2_normalize_channels(features).view(
            -1, self.num_segments, channels, height, width)
        current = features[:, :-1].reshape(-1, channels, height, width)
        following = features[:, 1:].reshape(-1, channels, height, width)
        # In place: no kernel keeps its output for backward.
        return F.relu(
            local_correlation(current, following, self.patch_size // 2,
                              impl=self.correlation_impl),
            inplace=True)

    def _repeat_last_pair(self, pair_maps: torch.Tensor) -> torch.Tensor:
        """(N*(T-1), K, H, W) pair maps -> (N*T, K, H, W), last one doubled."""
        sizes = static_sizes(pair_maps)
        pair_maps = pair_maps.view((-1, self.num_segments - 1) + sizes)
        frame_maps = torch.cat([pair_maps, pair_maps[:, -1:]], dim=1)
        return frame_maps.view((-1, ) + sizes)

    def motion_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N*T, C, H, W) -> (N*T, out_channels, H, W) motion features."""
        if self.motion_input == 'correlation':
            return self._transform(
                self._repeat_last_pair(self._pair_correlation(x)))
        displacement, confidence = self.estimate_motion(x)
        maps = [displacement, confidence] if self.use_confidence else [
            displacement]
        return self._transform(torch.cat(maps, dim=1))

    def _conv_bn_relu(self, block: nn.Sequential,
                      x: torch.Tensor) -> torch.Tensor:
        """``block(x)`` for one conv-BN-ReLU block: with the batch norm
        folded into the convolution where it uses running statistics, a 1x1
        convolution as a matrix product
        (:func:`.folded_blocks.folded_conv_bn_relu`), eagerly and under
        torch.compile; exporters get the modules."""
        if is_exporting():
            return block(x)
        return folded_conv_bn_relu(block, x)

    def _transform(self, maps: torch.Tensor) -> torch.Tensor:
        """``self.transform(maps)``, block by block (:meth:`_conv_bn_relu`);
        in eager training (without ``with_cp``, which recomputes everything)
        the last pointwise conv-BN-ReLU, at out_channels and full size, is
        recomputed in backward instead of kept (:mod:`.recomputed_tail`);
        not with SyncBatchNorm (e.g. after mmengine's ``sync_bn``)."""
        *blocks, last = [block for stage in self.transform for block in stage]
        for block in blocks:
            maps = self._conv_bn_relu(block, maps)
        if self._recomputes_tail():
            return recomputed_conv_bn_relu(last, maps)
        return self._conv_bn_relu(last, maps)

    def _recomputes_tail(self) -> bool:
        """Whether :meth:`_transform` recomputes its last block in backward
        (then autograd keeps nothing of that block's output)."""
        return (self.training and torch.is_grad_enabled()
                and not self.with_cp and not is_exporting_or_compiling()
                and type(self.transform[-1][-1][1]) is nn.BatchNorm2d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N*T, C, H, W) -> (N*T, C, H, W): x plus the motion features."""
        if self.out_channels != self.in_channels:
            raise ValueError(
                'forward adds the motion features to x, which needs '
                f'out_channels == in_channels, got {self.out_channels} and '
                f'{self.in_channels}; use motion_features() instead')
        # Not for a subclass: the op rebuilds a MotionSqueeze.
        if type(self) is MotionSqueeze and runs_as_one_op(self):
            return motion_squeeze_inference(x, state_tensors(self),
                                            self._arguments)
        if self.with_cp and x.requires_grad:
            motion = cp.checkpoint(self.motion_features, x,
                                   use_reentrant=False)
        else:
            motion = self.motion_features(x)
        if self.zero_init_residual:
            motion = self.residual_scale(motion)
        # x goes into the motion features' buffer where autograd keeps none
        # of it for backward: without autograd, or as made by the recomputed
        # tail or the residual scale's convolution (neither saves its
        # output); not through a checkpoint or ReLU's output that it saved.
        owned = (not motion.requires_grad or self.zero_init_residual
                 or self._recomputes_tail())
        if (not owned or motion.dtype != x.dtype
                or is_exporting_or_compiling()):
            return x + motion
        return motion.add_(x)
