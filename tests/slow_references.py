"""Slow, plainly written references that the tests compare the package with
(imported as ``from slow_references import ...``, like repo_paths.py).

One pixel (and, for the correlation, one product) at a time, so that each
line can be checked against the paper by reading it. The window index of a
correlation is ``k = (dy + d) * (2d + 1) + (dx + d)`` for the displacement
``(dx, dy)``, ``-d <= dx, dy <= d``.
"""
import torch


def loop_local_correlation(f1, f2, d):
    """The package's ``local_correlation``, with loops.

    f1, f2: (B, C, H, W). Returns (B, (2d+1)^2, H, W):
    ``out[b, k, y, x] = f1[b, :, y, x] . f2[b, :, y + dy, x + dx]``, 0 where
    ``(y + dy, x + dx)`` leaves the map.
    """
    batch, channels, height, width = f1.shape
    side = 2 * d + 1
    out = torch.zeros(batch, side * side, height, width, dtype=f1.dtype)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                for dy in range(-d, d + 1):
                    for dx in range(-d, d + 1):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < height and 0 <= xx < width:
                            out[b, (dy + d) * side + dx + d, y, x] = sum(
                                f1[b, c, y, x] * f2[b, c, yy, xx]
                                for c in range(channels))
    return out


def per_pixel_soft_argmax(corr, patch, temperature, sigma=None):
    """Displacement and confidence from a correlation, one pixel at a time.

    corr: (B, patch^2, H, W). At each pixel the window's scores, times
    ``temperature``, go through a softmax; the displacement is the expected
    offset ``(dx, dy) / d`` under it, the confidence the highest score.

    - ``sigma=None``: the softmax over the raw window, the package's
      ``plain_soft_argmax`` (the paper's ablation without the kernel).
    - ``sigma`` given: the scores are first multiplied by a Gaussian of
      standard deviation ``sigma`` (in window cells) centred on the window's
      highest score, the paper's kernel soft-argmax, the package's
      ``kernel_soft_argmax``.

    Returns disp (B, 2, H, W) (x then y) and conf (B, 1, H, W), both
    differentiable in ``corr`` by autograd (the Gaussian's centre is not).
    """
    batch, _, height, width = corr.shape
    d = patch // 2
    cells = torch.arange(patch * patch, device=corr.device)
    row = (cells // patch).to(corr.dtype)  # dy + d of each window entry
    col = (cells % patch).to(corr.dtype)  # dx + d
    pixels = []
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                scores = corr[b, :, y, x]
                logits = scores * temperature
                if sigma is not None:
                    peak = int(scores.argmax())
                    squared_distance = ((row - peak // patch)**2 +
                                        (col - peak % patch)**2)
                    logits = logits * torch.exp(-squared_distance /
                                                (2 * sigma**2))
                prob = torch.softmax(logits, dim=0)
                pixels.append(
                    torch.stack([(prob * (col - d)).sum() / d,
                                 (prob * (row - d)).sum() / d,
                                 scores.max()]))
    out = torch.stack(pixels).view(batch, height, width, 3).permute(0, 3, 1, 2)
    return out[:, :2], out[:, 2:]
