"""Local correlation between two feature maps, in pure PyTorch.

MotionSqueeze compares every position of frame t with a window of positions of
frame t+1. The authors computed this with a compiled CUDA extension; here it is
plain PyTorch, so it runs on any device, is differentiable, and exports.
"""
import torch
import torch.nn.functional as F


def local_correlation(f1: torch.Tensor, f2: torch.Tensor,
                      max_displacement: int) -> torch.Tensor:
    """Dot products of ``f1`` with ``f2`` over a square window of displacements.

    Args:
        f1 (Tensor): (B, C, H, W) features of frame t.
        f2 (Tensor): (B, C, H, W) features of frame t+1.
        max_displacement (int): d; displacements -d..d on each axis.

    Returns:
        Tensor: (B, (2d+1)^2, H, W). Channel ``(dy + d) * (2d + 1) + (dx + d)``
        holds ``sum_c f1[:, c, y, x] * f2[:, c, y + dy, x + dx]``, zero where
        ``(y + dy, x + dx)`` falls outside the map.
    """
    if f1.dim() != 4 or f1.shape != f2.shape:
        raise ValueError('local_correlation expects two (B, C, H, W) maps of '
                         f'the same shape, got {tuple(f1.shape)} and '
                         f'{tuple(f2.shape)}')
    if max_displacement < 0:
        raise ValueError(
            f'max_displacement must be >= 0, got {max_displacement}')
    d = max_displacement
    height, width = f1.shape[-2:]
    f2_padded = F.pad(f2, (d, d, d, d))
    correlations = []
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            f2_shifted = f2_padded[:, :, d + dy:d + dy + height,
                                   d + dx:d + dx + width]
            correlations.append((f1 * f2_shifted).sum(dim=1))
    return torch.stack(correlations, dim=1)
