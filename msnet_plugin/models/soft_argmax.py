"""Soft-argmax: a displacement from a local correlation.

:func:`kernel_soft_argmax` is the paper's kernel soft-argmax: a hard argmax
picks the best displacement, a fixed Gaussian around it damps the
correlation, a softmax with a temperature and an expectation of the offsets
per axis give a sub-grid displacement. :func:`plain_soft_argmax` is the
paper's ablation without the Gaussian. Both share one home for the
Gaussian (:func:`_gaussian`), the offsets (:func:`_offsets`) and the
expectation (:func:`_expectation`).

Written plainly, the Gaussian weighting and the softmax make three
(B, P*P, H, W) tensors that autograd keeps until backward, each as large as
the correlation. :class:`GaussianSoftArgmax` keeps none: its forward works
on a few clips at a time, in place, and saves only the correlation (which
the ReLU before it keeps anyway), the argmax indices, the (B, 2, H, W)
result and the softmax's (B, 1, H, W) sums; its backward recomputes the
softmax a few clips at a time. The largest logit is known without a pass
(the peak correlation times the temperature), and one matrix product gives
the expected offsets and the softmax's sum together, so the probabilities
are never normalised element by element.
Exporters get plain ops instead, over the window's last axis
(:func:`soft_argmax_last_axis`), as runtimes such as onnxruntime run a
softmax natively; torch.compile calls the Function's kernels as a custom
op (:mod:`.kernel_ops`).

Gradient: with logits ``l_k = T * w_k * c_k`` (w the fixed Gaussian, T the
temperature), ``p = softmax(l)`` and ``u = sum_k p_k * ox_k`` (ox_k the
normalised horizontal offset of displacement k; v likewise with oy),
``dL/dc_k = T * w_k * p_k * (g_u * (ox_k - u) + g_v * (oy_k - v))``.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .fast_correlation import default_chunk_elements
from .tracing import (is_compiling_not_exporting, is_exporting,
                      is_exporting_or_compiling, static_sizes)


#: Logits reach -temperature below the peak: exp of less than about -87 is
#: a float32 denormal, which x86 CPUs compute (and multiply, sum) 10-100x
#: slower. Logits more than 60 below the peak are raised to 60 below it:
#: their probability (< 1e-26 of the peak's) changes nothing at float32
#: precision, and no denormal is made.
LOGIT_FLOOR = -60.0


def _chunks(batch: int, per_clip: int, chunk_elements: int):
    """Slices of clips whose (P*P, H, W) temporaries fit ``chunk_elements``
    values (the correlation kernel's budget by default: chunks that stay in
    cache measured fastest here too)."""
    step = max(1, chunk_elements // max(per_clip, 1))
    for start in range(0, batch, step):
        yield slice(start, min(start + step, batch))


def _grid(patch_size: int, like: torch.Tensor,
          dtype: torch.dtype) -> torch.Tensor:
    """(1, P, 1, 1) window indices 0..P-1."""
    return torch.arange(patch_size, device=like.device,
                        dtype=dtype).view(1, patch_size, 1, 1)


def _offsets(patch_size: int, like: torch.Tensor) -> torch.Tensor:
    """(1, P, 1, 1) offsets -d..d divided by d (d = P // 2), like's dtype."""
    max_disp = patch_size // 2
    return (_grid(patch_size, like, like.dtype) - max_disp) / max_disp


def _gaussian(best_index: torch.Tensor, patch_size: int, sigma: float,
              dtype: torch.dtype, axis: int = 1,
              scale: float = 1.0) -> torch.Tensor:
    """The fixed Gaussian (std ``sigma`` grid units) around the argmax.

    Args:
        best_index (Tensor): 4-D, the argmax over the P*P displacements,
            size 1 along ``axis``: (b, 1, H, W) for ``axis=1``, (b, H, W, 1)
            for ``axis=3``.
        scale (float): multiplies the result (folded into one axis's
            factor, before the outer product).

    Returns:
        Tensor: the window's two axes (P, P) in place of ``axis``: (b, P, P,
        H, W) or (b, H, W, P, P); ``[ky, kx]`` the weight of window entry
        (ky, kx), ``scale`` at the argmax.
    """
    shape = [1] * 4
    shape[axis] = patch_size
    grid = _grid(patch_size, best_index, dtype).view(shape)
    # Truncation is floor division for the non-negative indices, and one op
    # in an exported graph.
    best_y = torch.div(best_index, patch_size, rounding_mode='trunc')
    best_x = best_index - best_y * patch_size
    gauss_y = torch.exp(-(grid - best_y).pow(2) / (2 * sigma**2))
    gauss_x = torch.exp(-(grid - best_x).pow(2) / (2 * sigma**2))
    if scale != 1.0:
        gauss_y = gauss_y * scale
    return gauss_y.unsqueeze(axis + 1) * gauss_x.unsqueeze(axis)


def _offset_weights(patch_size: int, like: torch.Tensor,
                    with_sum: bool = False) -> torch.Tensor:
    """(2, P*P): the horizontal (row 0) and vertical (row 1) offset of each
    window entry ``ky * P + kx``, divided by d, like's dtype; ``with_sum``:
    (3, P*P), a row of ones below them."""
    offsets = _offsets(patch_size, like)
    rows = [
        offsets.view(1, patch_size).expand(patch_size, patch_size),
        offsets.view(patch_size, 1).expand(patch_size, patch_size)
    ]
    if with_sum:
        rows.append(torch.ones_like(rows[0]))
    return torch.stack(rows).reshape(len(rows), patch_size * patch_size)


def _expectation(prob: torch.Tensor) -> torch.Tensor:
    """(b, P, P, H, W) probabilities over the window -> (b, 2, H, W)
    expected offsets, channel 0 = dx, channel 1 = dy.

    One matrix product with fixed weights (the offsets of each window
    entry): a single pass over the probabilities, one node in a graph. (A
    matrix product, not a 1x1 convolution: cuDNN convolutions round float32
    to TF32 by default, matrix products do not.)
    """
    patch_size, _, height, width = static_sizes(prob)
    flat = prob.reshape(-1, patch_size * patch_size, height * width)
    return torch.matmul(_offset_weights(patch_size, prob),
                        flat).view(-1, 2, height, width)


def _max_and_first_argmax(correlation: torch.Tensor, patch_size: int,
                          dim: int = -1):
    """Maximum over the window axis ``dim`` and the first window entry (in
    ``ky * P + kx`` order) that reaches it, as ``max(dim=dim)`` gives them,
    in passes that run fast: the maximum of each window row, then the first
    row reaching the largest and the first entry of that row reaching it
    (onnxruntime's ArgMax over P*P values per position costs several times
    a ReduceMax; eager ``max(dim=1)`` over the P*P channels several times an
    ``amax``).

    Args:
        correlation (Tensor): 4-D, the P*P window entries along ``dim``:
            (B, H, W, P*P) for ``dim=-1``, (B, P*P, H, W) for ``dim=1``.
        dim (int): the window axis, 1 or -1 (3).

    Returns:
        tuple[Tensor, Tensor]: the maximum and its index (int64), both of
        ``correlation``'s shape with size 1 along ``dim``.
    """
    dim = dim % correlation.dim()
    sizes = list(static_sizes(correlation))
    sizes[dim - 1:dim] = [patch_size, patch_size]
    row_max = correlation.view([-1] + sizes).amax(dim=dim + 1)
    confidence, best_row = row_max.max(dim=dim, keepdim=True)
    row_start = best_row * patch_size
    entry_shape = [1] * correlation.dim()
    entry_shape[dim] = patch_size
    best_row_values = torch.gather(
        correlation, dim, row_start + torch.arange(
            patch_size, device=correlation.device).view(entry_shape))
    if is_exporting_or_compiling():
        best_entry = best_row_values.argmax(dim=dim, keepdim=True)
    else:
        # Eagerly max's indices: argmax over a channel axis runs several
        # times slower.
        best_entry = best_row_values.max(dim=dim, keepdim=True)[1]
    return confidence, row_start + best_entry


def _gaussian_table(patch_size: int, sigma: float, temperature: float,
                    like: torch.Tensor) -> torch.Tensor:
    """(P*P, P*P), like's dtype: row k is :func:`_gaussian` around window
    entry k, times ``temperature`` (a constant of an exported graph)."""
    window = patch_size * patch_size
    best_index = torch.arange(window, device=like.device).view(-1, 1, 1, 1)
    return _gaussian(best_index, patch_size, sigma, like.dtype, axis=1,
                     scale=temperature).reshape(window, window)


def soft_argmax_last_axis(correlation: torch.Tensor, patch_size: int,
                          temperature: float,
                          sigma: Optional[float] = None,
                          best_index: Optional[torch.Tensor] = None):
    """The soft-argmax in plain ops over the window's LAST axis.

    What exporters and compilers get: the max, the softmax and the
    expectation run over the innermost axis, as runtimes (onnxruntime) run
    them natively; a softmax over the channels of an NCHW tensor costs them
    a transpose before and after.

    Args:
        correlation (Tensor): (B, H, W, P*P), window entry
            ``(dy + d) * P + (dx + d)`` last (e.g. ``.permute(0, 2, 3, 1)``
            of :func:`.fast_correlation.strip_correlation`'s result, no
            copy).
        patch_size (int): P.
        temperature (float): logits are ``correlation * temperature``.
        sigma (float, optional): std of the kernel's Gaussian around the
            argmax; None: no kernel (the plain soft-argmax).
        best_index (Tensor, optional): (B, H, W, 1) argmax over the window;
            None: computed here.

    Returns:
        tuple[Tensor, Tensor]: displacement (B, 2, H, W), channel 0 = dx,
        channel 1 = dy, divided by d; confidence (B, 1, H, W), the maximum
        over the window.
    """
    height, width, channels = static_sizes(correlation)
    if sigma is None:
        confidence = correlation.amax(dim=-1, keepdim=True)
        logits = correlation * temperature
    else:
        if best_index is None:
            confidence, best_index = _max_and_first_argmax(
                correlation, patch_size)
        else:
            confidence = correlation.amax(dim=-1, keepdim=True)
        # The Gaussian around each position's argmax, a row of a fixed
        # table: one gather of P*P values per position.
        gaussian = _gaussian_table(patch_size, sigma, temperature,
                                   correlation).index_select(
                                       0, best_index.reshape(-1))
        logits = correlation * gaussian.view(-1, height, width, channels)
    # The logit at the argmax is temperature * confidence (the Gaussian is 1
    # there), so the floor lies at least 60 below the largest logit.
    logits = torch.maximum(logits, confidence * temperature + LOGIT_FLOOR)
    prob = F.softmax(logits, dim=-1).view(-1, height * width, channels)
    # (B, H*W, P*P) @ (P*P, 2): the transpose is of the small result.
    displacement = torch.matmul(prob, _offset_weights(patch_size, prob).t())
    return (displacement.transpose(1, 2).reshape(-1, 2, height, width),
            confidence.view(-1, 1, height, width))


def _exp_logits(correlation: torch.Tensor, best_index: torch.Tensor,
                patch_size: int, sigma: float,
                temperature: float) -> torch.Tensor:
    """exp(T * w * c - T * c_max) over displacements, floored as
    :data:`LOGIT_FLOOR` says: the softmax before its normalisation, in
    place on one temporary; and the temperature-scaled Gaussian ``T * w``.

    The largest logit needs no pass of its own: it is ``T * c_max``, at the
    argmax, where the Gaussian is 1; elsewhere ``w * c <= c <= c_max`` as
    the correlation is ReLU'd (``w <= 1``, ``c >= 0``).

    Args:
        correlation (Tensor): (b, P*P, H, W), >= 0, for a few clips.
        best_index (Tensor): (b, 1, H, W) argmax over displacements.

    Returns:
        tuple[Tensor, Tensor]: unnormalised probabilities (b, P, P, H, W),
        1 at the argmax, and ``T * w`` (b, P, P, H, W), float32 or wider.
    """
    batch, _, height, width = correlation.shape
    dtype = torch.promote_types(correlation.dtype, torch.float32)
    scaled_gaussian = _gaussian(best_index, patch_size, sigma, dtype,
                                scale=temperature)
    peak_logit = correlation.gather(1, best_index).to(dtype) * temperature
    # T * w * c - T * c_max in one pass.
    weights = torch.addcmul(
        -peak_logit.unsqueeze(1),
        correlation.reshape(batch, patch_size, patch_size, height, width),
        scaled_gaussian)
    if weights.dtype == torch.float32:
        weights.clamp_(min=LOGIT_FLOOR)
    return weights.exp_(), scaled_gaussian


def _normalised_expectation(weights: torch.Tensor):
    """(b, P, P, H, W) unnormalised probabilities -> expected offsets
    (b, 2, H, W), channel 0 = dx, 1 = dy, and the weights' sum over the
    window (b, 1, H, W): one matrix product with the offsets and a row of
    ones (one pass over the weights), then a division of its small
    result."""
    patch_size, _, height, width = static_sizes(weights)
    flat = weights.reshape(-1, patch_size * patch_size, height * width)
    moments = torch.matmul(_offset_weights(patch_size, weights, True),
                           flat).view(-1, 3, height, width)
    total = moments[:, 2:]
    return moments[:, :2] / total, total


def gaussian_soft_argmax_forward(correlation: torch.Tensor,
                                 best_index: torch.Tensor, patch_size: int,
                                 sigma: float, temperature: float,
                                 chunk_elements: int):
    """:class:`GaussianSoftArgmax`'s forward kernel, chunk by chunk, without
    autocast: the displacement (B, 2, H, W) and the softmax's sums
    (B, 1, H, W, float32 or wider) that its backward needs."""
    batch, _, height, width = correlation.shape
    displacement = correlation.new_empty(batch, 2, height, width)
    dtype = torch.promote_types(correlation.dtype, torch.float32)
    totals = correlation.new_empty(batch, 1, height, width, dtype=dtype)
    with torch.autocast(correlation.device.type, enabled=False):
        for part in _chunks(batch, correlation[0].numel(), chunk_elements):
            weights, _ = _exp_logits(correlation[part], best_index[part],
                                     patch_size, sigma, temperature)
            displacement[part], totals[part] = _normalised_expectation(
                weights)
    return displacement, totals


def gaussian_soft_argmax_backward(grad_displacement: torch.Tensor,
                                  correlation: torch.Tensor,
                                  best_index: torch.Tensor,
                                  displacement: torch.Tensor,
                                  totals: torch.Tensor, patch_size: int,
                                  sigma: float, temperature: float,
                                  chunk_elements: int) -> torch.Tensor:
    """The correlation's gradient through the displacement (shaped like
    ``correlation``), the softmax recomputed chunk by chunk."""
    batch = correlation.shape[0]
    grad_correlation = torch.empty_like(correlation)
    with torch.autocast(correlation.device.type, enabled=False):
        for part in _chunks(batch, correlation[0].numel(), chunk_elements):
            weights, scaled_gaussian = _exp_logits(
                correlation[part], best_index[part], patch_size, sigma,
                temperature)
            offsets = _offsets(patch_size, weights)
            # The probabilities are weights / totals: the division goes into
            # the (b, 2, H, W) factor.
            grad = grad_displacement[part].to(weights.dtype) / totals[part]
            disp = displacement[part].to(weights.dtype)
            # (b, 1, P, H, W) along x plus (b, P, 1, H, W) along y.
            along_x = grad[:, 0:1] * (offsets - disp[:, 0:1])
            along_y = grad[:, 1:2] * (offsets - disp[:, 1:2])
            weights *= along_x.unsqueeze(1) + along_y.unsqueeze(2)
            torch.mul(weights, scaled_gaussian,
                      out=grad_correlation[part].view_as(weights))
    return grad_correlation


class GaussianSoftArgmax(torch.autograd.Function):
    """Kernel soft-argmax displacement and confidence of a ReLU'd
    correlation.

    ``GaussianSoftArgmax.apply(correlation, best_index, patch_size, sigma,
    temperature, chunk_elements)`` maps (B, P*P, H, W) and its (B, 1, H, W)
    argmax over displacements to the displacement (B, 2, H, W): channel
    0 = dx, 1 = dy, divided by d = P // 2, and the confidence (B, 1, H, W),
    the correlation at the argmax (its gradient is added there, in place:
    no full-size zeros and sum as for a separate gather). No gradient flows
    to ``best_index`` (the Gaussian is fixed, as in the paper). Not twice
    differentiable.
    """

    @staticmethod
    def forward(ctx, correlation: torch.Tensor, best_index: torch.Tensor,
                patch_size: int, sigma: float, temperature: float,
                chunk_elements: int):
        confidence = correlation.gather(1, best_index)
        displacement, totals = gaussian_soft_argmax_forward(
            correlation, best_index, patch_size, sigma, temperature,
            chunk_elements)
        ctx.save_for_backward(correlation, best_index, displacement, totals)
        ctx.settings = (patch_size, sigma, temperature, chunk_elements)
        ctx.mark_non_differentiable(best_index)
        return displacement, confidence

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_displacement: torch.Tensor,
                 grad_confidence: torch.Tensor):
        correlation, best_index, displacement, totals = ctx.saved_tensors
        grad_correlation = gaussian_soft_argmax_backward(
            grad_displacement, correlation, best_index, displacement, totals,
            *ctx.settings)
        grad_correlation.scatter_add_(1, best_index, grad_confidence.to(
            grad_correlation.dtype))
        return grad_correlation, None, None, None, None, None


def gaussian_soft_argmax_plain(correlation: torch.Tensor,
                               best_index: torch.Tensor, patch_size: int,
                               sigma: float,
                               temperature: float) -> torch.Tensor:
    """:class:`GaussianSoftArgmax`'s displacement in plain, traceable ops
    (:func:`soft_argmax_last_axis` on the channels-last view).

    Same arguments (without the budget) and result; autograd keeps its
    full-size temporaries, so it serves exporters and compilers, not eager
    training.
    """
    return soft_argmax_last_axis(correlation.permute(0, 2, 3, 1),
                                 patch_size, temperature, sigma,
                                 best_index.permute(0, 2, 3, 1))[0]


def kernel_soft_argmax(correlation: torch.Tensor,
                       patch_size: int,
                       sigma: float,
                       temperature: float,
                       chunk_elements: Optional[int] = None):
    """Displacement and confidence from a ReLU'd local correlation.

    A hard argmax picks the best displacement; the correlation is damped by a
    fixed Gaussian (std ``sigma`` grid units) around it, so that a second peak
    cannot drag the estimate; a softmax with ``temperature`` and an expectation
    per axis give a sub-grid displacement.

    Args:
        correlation (Tensor): (B, P*P, H, W), P = patch_size, channel
            ``(dy + d) * P + (dx + d)`` for d = P // 2; >= 0 (ReLU'd): the
            eager Function takes the largest logit to be at the argmax.
        patch_size (int): P, odd.
        sigma (float): std of the Gaussian kernel, in grid units.
        temperature (float): softmax logits are ``correlation * temperature``.
        chunk_elements (int, optional): memory budget of the eager Function,
            values per chunk of clips; None: the device's default
            (:func:`.fast_correlation.default_chunk_elements`).

    Returns:
        tuple[Tensor, Tensor]: displacement (B, 2, H, W), channel 0 = dx,
        channel 1 = dy, divided by d so both lie in [-1, 1]; confidence
        (B, 1, H, W), the maximum of the correlation over displacements.
    """
    _check_channels('kernel_soft_argmax', correlation, patch_size)
    if is_exporting():
        # Exporters get plain ops over the last axis, not the autograd
        # Function.
        return soft_argmax_last_axis(correlation.permute(0, 2, 3, 1),
                                     patch_size, temperature, sigma)
    _, best_index = _max_and_first_argmax(correlation.detach(), patch_size,
                                          dim=1)
    if chunk_elements is None:
        chunk_elements = default_chunk_elements(correlation.device)
    if is_compiling_not_exporting():
        # torch.compile calls the eager kernel as the custom op of
        # .kernel_ops (looked up by name: that module imports this one).
        displacement, _ = torch.ops.msnet.gaussian_soft_argmax(
            correlation, best_index, patch_size, sigma, temperature,
            chunk_elements)
        return displacement, correlation.gather(1, best_index)
    return GaussianSoftArgmax.apply(correlation, best_index, patch_size,
                                    sigma, temperature, chunk_elements)


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
    _check_channels('plain_soft_argmax', correlation, patch_size)
    if is_exporting_or_compiling():
        return soft_argmax_last_axis(correlation.permute(0, 2, 3, 1),
                                     patch_size, temperature)
    _, height, width = static_sizes(correlation)
    confidence = correlation.max(dim=1, keepdim=True)[0]
    prob = F.softmax(correlation * temperature, dim=1).view(
        -1, patch_size, patch_size, height, width)
    return _expectation(prob), confidence


def _check_channels(name: str, correlation: torch.Tensor,
                    patch_size: int) -> None:
    if correlation.dim() != 4:
        raise ValueError(f'{name}: correlation must be (B, P*P, H, W), got a '
                         f'{correlation.dim()}-D tensor')
    channels = static_sizes(correlation)[0]
    if channels != patch_size**2:
        raise ValueError(f'{name}: correlation has {channels} channels, '
                         f'expected patch_size^2 = {patch_size}^2')
