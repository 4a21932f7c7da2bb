"""The displacement part of kernel soft-argmax, without full-size copies,
and the plain soft-argmax of the paper's ablation.

Written plainly (``MotionSqueeze``'s original formulation), the Gaussian
weighting and the softmax make three (B, P*P, H, W) tensors that autograd
keeps until backward (the Gaussian, the weighted logits' softmax and its
input), each as large as the correlation itself. :class:`GaussianSoftArgmax`
keeps none: its forward works on a few clips at a time, in place, and saves
only the correlation (which the ReLU before it keeps anyway), the argmax
indices and the (B, 2, H, W) result; its backward recomputes the softmax a
few clips at a time.

Gradient: with logits ``l_k = T * w_k * c_k`` (w the fixed Gaussian, T the
temperature), ``p = softmax(l)`` and ``u = sum_k p_k * ox_k`` (ox_k the
normalised horizontal offset of displacement k; v likewise with oy),
``dL/dc_k = T * w_k * p_k * (g_u * (ox_k - u) + g_v * (oy_k - v))``.
"""
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

#: Values per temporary: the forward and backward work on as many clips as
#: fit in this many elements (at least one clip), 16 MB in float32.
CHUNK_ELEMENTS = 1 << 22


def _chunks(batch: int, per_clip: int):
    step = max(1, CHUNK_ELEMENTS // max(per_clip, 1))
    for start in range(0, batch, step):
        yield slice(start, min(start + step, batch))


def _probabilities(correlation: torch.Tensor, best_index: torch.Tensor,
                   patch_size: int, sigma: float,
                   temperature: float) -> torch.Tensor:
    """softmax(T * gaussian * correlation) over displacements, and the
    Gaussian.

    Args:
        correlation (Tensor): (b, P*P, H, W) for a few clips.
        best_index (Tensor): (b, 1, H, W) argmax over displacements.

    Returns:
        tuple[Tensor, Tensor]: probabilities (b, P, P, H, W) and the
        temperature-scaled Gaussian ``T * w`` (b, P, P, H, W), float32 or
        wider.
    """
    batch, _, height, width = correlation.shape
    dtype = torch.promote_types(correlation.dtype, torch.float32)
    grid = torch.arange(patch_size, device=correlation.device,
                        dtype=dtype).view(1, patch_size, 1, 1)
    best_y = torch.div(best_index, patch_size, rounding_mode='floor')
    best_x = best_index - best_y * patch_size
    gauss_y = torch.exp(-(grid - best_y).pow(2) / (2 * sigma**2))
    gauss_x = torch.exp(-(grid - best_x).pow(2) / (2 * sigma**2))
    scaled_gaussian = (gauss_y * temperature).unsqueeze(2) * \
        gauss_x.unsqueeze(1)
    probabilities = correlation.reshape(batch, patch_size, patch_size, height,
                                        width) * scaled_gaussian
    flat = probabilities.view(batch, -1, height, width)
    flat -= flat.amax(dim=1, keepdim=True)
    if flat.dtype == torch.float32:
        # Logits reach -temperature below the peak: exp of less than about
        # -87 is a float32 denormal, which x86 CPUs compute 10-100x slower.
        # Below -60 the probability (< 1e-26 of the peak's) is kept at
        # exp(-60): no change at float32 precision, no denormals.
        flat.clamp_(min=-60.0)
    flat.exp_()
    flat /= flat.sum(dim=1, keepdim=True)
    return probabilities, scaled_gaussian


def _offsets(patch_size: int, like: torch.Tensor) -> torch.Tensor:
    """(P,) offsets -d..d divided by d, shaped (1, P, 1, 1)."""
    max_disp = patch_size // 2
    grid = torch.arange(patch_size, device=like.device, dtype=like.dtype)
    return ((grid - max_disp) / max_disp).view(1, patch_size, 1, 1)


class GaussianSoftArgmax(torch.autograd.Function):
    """Kernel soft-argmax displacement of a ReLU'd correlation.

    ``GaussianSoftArgmax.apply(correlation, best_index, patch_size, sigma,
    temperature)`` maps (B, P*P, H, W) and its (B, 1, H, W) argmax over
    displacements to the displacement (B, 2, H, W): channel 0 = dx, 1 = dy,
    divided by d = P // 2. No gradient flows to ``best_index`` (the Gaussian
    is fixed, as in the paper). Not twice differentiable.
    """

    @staticmethod
    def forward(ctx, correlation: torch.Tensor, best_index: torch.Tensor,
                patch_size: int, sigma: float,
                temperature: float) -> torch.Tensor:
        batch, _, height, width = correlation.shape
        displacement = correlation.new_empty(batch, 2, height, width)
        with torch.autocast(correlation.device.type, enabled=False):
            for part in _chunks(batch, correlation[0].numel()):
                prob, _ = _probabilities(correlation[part], best_index[part],
                                         patch_size, sigma, temperature)
                offsets = _offsets(patch_size, prob)
                displacement[part, 0:1] = (prob.sum(dim=1) * offsets).sum(
                    dim=1, keepdim=True)
                displacement[part, 1:2] = (prob.sum(dim=2) * offsets).sum(
                    dim=1, keepdim=True)
        ctx.save_for_backward(correlation, best_index, displacement)
        ctx.settings = (patch_size, sigma, temperature)
        ctx.mark_non_differentiable(best_index)
        return displacement

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_displacement: torch.Tensor):
        correlation, best_index, displacement = ctx.saved_tensors
        patch_size, sigma, temperature = ctx.settings
        batch = correlation.shape[0]
        grad_correlation = torch.empty_like(correlation)
        with torch.autocast(correlation.device.type, enabled=False):
            for part in _chunks(batch, correlation[0].numel()):
                prob, scaled_gaussian = _probabilities(
                    correlation[part], best_index[part], patch_size, sigma,
                    temperature)
                offsets = _offsets(patch_size, prob)
                grad = grad_displacement[part].to(prob.dtype)
                disp = displacement[part].to(prob.dtype)
                # (b, 1, P, H, W) along x plus (b, P, 1, H, W) along y.
                along_x = grad[:, 0:1] * (offsets - disp[:, 0:1])
                along_y = grad[:, 1:2] * (offsets - disp[:, 1:2])
                prob *= along_x.unsqueeze(1) + along_y.unsqueeze(2)
                prob *= scaled_gaussian
                grad_correlation[part] = prob.view_as(correlation[part])
        return grad_correlation, None, None, None, None


def gaussian_soft_argmax_plain(correlation: torch.Tensor,
                               best_index: torch.Tensor, patch_size: int,
                               sigma: float,
                               temperature: float) -> torch.Tensor:
    """:class:`GaussianSoftArgmax`'s displacement in plain, traceable ops.

    Same arguments and result; autograd keeps its full-size temporaries, so
    it serves exporters and compilers, not training.
    """
    batch, _, height, width = correlation.shape
    grid = torch.arange(patch_size, device=correlation.device,
                        dtype=correlation.dtype).view(1, patch_size, 1, 1)
    best_y = torch.div(best_index, patch_size, rounding_mode='floor')
    best_x = best_index - best_y * patch_size
    gauss_y = torch.exp(-(grid - best_y).pow(2) / (2 * sigma**2))
    gauss_x = torch.exp(-(grid - best_x).pow(2) / (2 * sigma**2))
    gaussian = gauss_y.unsqueeze(2) * gauss_x.unsqueeze(1)
    logits = correlation.view(batch, patch_size, patch_size, height, width)
    logits = (logits * gaussian * temperature).view(batch, -1, height, width)
    prob = F.softmax(logits, dim=1).view(batch, patch_size, patch_size,
                                         height, width)
    offsets = _offsets(patch_size, prob)
    dy = (prob.sum(dim=2) * offsets).sum(dim=1, keepdim=True)
    dx = (prob.sum(dim=1) * offsets).sum(dim=1, keepdim=True)
    return torch.cat([dx, dy], dim=1)


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
