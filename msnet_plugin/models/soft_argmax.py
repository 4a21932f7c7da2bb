"""Plain soft-argmax: the ablation of MotionSqueeze's kernel soft-argmax.

The paper compares its kernel soft-argmax (a Gaussian around the hard argmax
before the softmax) with a plain soft-argmax over the whole window; this is
the latter, for ``MotionSqueeze(soft_argmax='plain')``.
"""
import torch
import torch.nn.functional as F


def plain_soft_argmax(correlation: torch.Tensor, patch_size: int,
                      temperature: float):
    """Displacement and confidence from a correlation, without the kernel.

    Args:
        correlation (Tensor): (B, P*P, H, W), P = patch_size, channel
            ``(dy + d) * P + (dx + d)`` for d = P // 2.
        patch_size (int): P, odd.
        temperature (float): softmax logits are ``correlation * temperature``.

    Returns:
        tuple[Tensor, Tensor]: displacement (B, 2, H, W), channel 0 = dx,
        channel 1 = dy: the expectation of the offsets under
        ``softmax(correlation * temperature)`` over all P*P displacements,
        divided by d (so in [-1, 1]); confidence (B, 1, H, W), the maximum
        of the correlation over displacements.
    """
    batch, channels, height, width = correlation.shape
    if channels != patch_size * patch_size:
        raise ValueError(f'plain_soft_argmax: correlation has {channels} '
                         f'channels, expected patch_size^2 = {patch_size}^2')
    max_disp = patch_size // 2
    confidence = correlation.max(dim=1, keepdim=True)[0]
    prob = F.softmax(correlation * temperature, dim=1).view(
        batch, patch_size, patch_size, height, width)
    offsets = (torch.arange(patch_size, device=correlation.device,
                            dtype=correlation.dtype) - max_disp) / max_disp
    offsets = offsets.view(1, patch_size, 1, 1)
    dy = (prob.sum(dim=2) * offsets).sum(dim=1, keepdim=True)
    dx = (prob.sum(dim=1) * offsets).sum(dim=1, keepdim=True)
    return torch.cat([dx, dy], dim=1), confidence
