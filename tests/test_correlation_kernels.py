"""The correlation kernels and the lean soft-argmax against plain references."""
import pytest
import torch
import torch.nn.functional as F

from msnet_plugin.models import (MotionSqueeze, kernel_soft_argmax,
                                 local_correlation,
                                 local_correlation_reference,
                                 set_default_correlation_impl)
from msnet_plugin.models import correlation as correlation_module
from msnet_plugin.models.fast_correlation import (FastLocalCorrelation,
                                                  strip_rows_for)

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs a CUDA device')


def plain_soft_argmax(corr, patch, sigma, temperature):
    """MotionSqueeze's original formulation, differentiable by autograd."""
    batch, _, height, width = corr.shape
    d = patch // 2
    _, best = corr.max(dim=1, keepdim=True)
    best_y, best_x = best // patch, best % patch
    grid = torch.arange(patch, dtype=corr.dtype).view(1, patch, 1, 1)
    gaussian = (torch.exp(-(grid - best_y)**2 / (2 * sigma**2)).unsqueeze(2) *
                torch.exp(-(grid - best_x)**2 / (2 * sigma**2)).unsqueeze(1))
    logits = corr.view(batch, patch, patch, height, width) * gaussian
    prob = F.softmax(logits.flatten(1, 2) * temperature, dim=1).view_as(logits)
    offsets = (grid - d) / d
    dx = (prob.sum(dim=1) * offsets).sum(dim=1, keepdim=True)
    dy = (prob.sum(dim=2) * offsets).sum(dim=1, keepdim=True)
    return torch.cat([dx, dy], dim=1)


@pytest.mark.parametrize('shape,d', [((2, 3, 8, 6), 2), ((1, 5, 7, 9), 3),
                                     ((3, 4, 13, 5), 1), ((1, 2, 6, 6), 0),
                                     ((2, 16, 12, 10), 4)])
def test_fast_matches_reference_float32(shape, d):
    """Values and both gradients within 1e-5, including heights whose strip
    is not 4 rows (7 and 13 rows: strips of 7 and 1) and d = 0."""
    torch.manual_seed(sum(shape) + d)
    f1 = torch.randn(shape, requires_grad=True)
    f2 = torch.randn(shape, requires_grad=True)
    grad_out = torch.randn(shape[0], (2 * d + 1)**2, *shape[2:])
    outputs = []
    for impl in ('fast', 'reference'):
        out = local_correlation(f1, f2, d, impl=impl)
        outputs.append((out, ) + torch.autograd.grad(out, (f1, f2), grad_out))
    for fast, reference in zip(*outputs):
        torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


def test_fast_gradcheck_float64():
    torch.manual_seed(0)
    f1 = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    f2 = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b: FastLocalCorrelation.apply(a, b, 2), (f1, f2),
        fast_mode=True)


def test_fast_one_input_needs_grad_and_inplace_relu():
    """Only f2 trainable; the output can be ReLU'd in place (it is not a view
    and not saved)."""
    torch.manual_seed(1)
    f1 = torch.randn(1, 3, 4, 4)
    f2 = torch.randn(1, 3, 4, 4, requires_grad=True)
    F.relu(local_correlation(f1, f2, 1), inplace=True).sum().backward()
    f2_ref = f2.detach().clone().requires_grad_()
    F.relu(local_correlation_reference(f1, f2_ref, 1)).sum().backward()
    torch.testing.assert_close(f2.grad, f2_ref.grad)


def test_strip_rows_divide_the_height():
    assert [strip_rows_for(h) for h in (28, 14, 56, 7, 13, 8, 1)] == \
        [4, 2, 4, 7, 1, 4, 1]


def test_selection_on_cpu(monkeypatch):
    f = torch.zeros(1, 2, 3, 3)
    resolve = correlation_module.resolve_correlation_impl
    assert resolve('auto', f) == 'fast'
    assert resolve(None, f) == 'fast'
    assert resolve('reference', f) == 'reference'
    with pytest.raises(ValueError, match="unknown correlation impl 'cuda'"):
        resolve('cuda', f)
    triton_message = ('only on CUDA tensors'
                      if correlation_module.triton_available() else
                      'needs the triton package')
    with pytest.raises(RuntimeError, match=triton_message):
        local_correlation(f, f, 1, impl='triton')
    mmcv_message = ('only on CUDA tensors'
                    if correlation_module.mmcv_correlation_available() else
                    'needs full mmcv')
    with pytest.raises(RuntimeError, match=mmcv_message):
        local_correlation(f, f, 1, impl='mmcv')
    # Exporters and compilers see the plain formulation under 'auto'.
    monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
    assert resolve('auto', f) == 'reference'


def test_process_default_and_module_override(monkeypatch):
    calls = []
    kernels = dict(correlation_module._KERNELS)
    for name in ('fast', 'reference'):
        monkeypatch.setitem(
            correlation_module._KERNELS, name,
            lambda a, b, d, name=name: calls.append(name) or kernels[name]
            (a, b, d))
    x = torch.randn(2, 4, 6, 6)
    ms = MotionSqueeze(4, num_segments=2, reduced_channels=4, patch_size=3)
    ms.estimate_motion(x)
    try:
        set_default_correlation_impl('reference')
        ms.estimate_motion(x)
        MotionSqueeze(4, num_segments=2, reduced_channels=4, patch_size=3,
                      correlation_impl='fast').estimate_motion(x)
    finally:
        set_default_correlation_impl('auto')
    assert calls == ['fast', 'reference', 'fast']
    with pytest.raises(ValueError, match='correlation_impl must be one of'):
        MotionSqueeze(4, correlation_impl='cuda')
    with pytest.raises(ValueError, match='unknown correlation impl'):
        set_default_correlation_impl('gpu')


def test_auto_on_cuda_skips_a_kernel_that_disagrees(monkeypatch):
    """The CUDA choice, with the device faked: a kernel that differs from
    'fast' is skipped with a warning, one that raises too."""
    monkeypatch.setattr(correlation_module, 'mmcv_correlation_available',
                        lambda: True)
    monkeypatch.setattr(correlation_module, 'triton_available', lambda: True)
    errors = {'mmcv': 0.5, 'triton': 0.0}
    monkeypatch.setattr(correlation_module, 'kernel_error_vs_fast',
                        lambda name, device: errors[name])
    with pytest.warns(UserWarning, match="'mmcv' kernel differs"):
        choice = correlation_module._first_working_cuda_kernel('cuda')
    assert choice == 'triton'

    def broken(name, device):
        raise RuntimeError('no kernel image')

    monkeypatch.setattr(correlation_module, 'kernel_error_vs_fast', broken)
    with pytest.warns(UserWarning, match="'triton' kernel failed"):
        assert correlation_module._first_working_cuda_kernel('cuda') == 'fast'


def test_soft_argmax_values_and_gradients_match_plain():
    torch.manual_seed(0)
    corr = (torch.relu(torch.randn(3, 49, 5, 6, dtype=torch.float64)) *
            0.05).requires_grad_()
    disp, conf = kernel_soft_argmax(corr, 7, sigma=2.0, temperature=100.0)
    grad = torch.randn_like(disp)
    (lean_grad, ) = torch.autograd.grad(disp, corr, grad)
    plain = plain_soft_argmax(corr, 7, 2.0, 100.0)
    (plain_grad, ) = torch.autograd.grad(plain, corr, grad)
    torch.testing.assert_close(disp, plain)
    torch.testing.assert_close(lean_grad, plain_grad)
    torch.testing.assert_close(conf, corr.max(dim=1, keepdim=True)[0])


def test_soft_argmax_float32_matches_plain():
    """Float32 logits 100 below the peak (clamped against denormals) give
    the plain formulation's values and gradients."""
    torch.manual_seed(3)
    corr = torch.rand(2, 225, 6, 7).requires_grad_()
    disp, _ = kernel_soft_argmax(corr, 15, sigma=5.0, temperature=100.0)
    plain = plain_soft_argmax(corr, 15, 5.0, 100.0)
    grad = torch.randn_like(disp)
    torch.testing.assert_close(disp, plain)
    lean_grad = torch.autograd.grad(disp, corr, grad)[0]
    plain_grad = torch.autograd.grad(plain, corr, grad)[0]
    # Gradients carry the factor temperature = 100: float32 rounding of two
    # summation orders differs by up to ~1e-5 on entries of size ~1.
    assert plain_grad.abs().max() > 1
    torch.testing.assert_close(lean_grad, plain_grad, rtol=0, atol=1e-4)


def test_soft_argmax_chunks_agree(monkeypatch):
    from msnet_plugin.models import soft_argmax
    torch.manual_seed(2)
    corr = torch.rand(5, 25, 4, 4, requires_grad=True)
    whole = kernel_soft_argmax(corr, 5, 5.0, 100.0)[0]
    (whole_grad, ) = torch.autograd.grad(whole.sum(), corr)
    monkeypatch.setattr(soft_argmax, 'CHUNK_ELEMENTS', 2 * 25 * 16)
    chunked = kernel_soft_argmax(corr, 5, 5.0, 100.0)[0]
    (chunked_grad, ) = torch.autograd.grad(chunked.sum(), corr)
    torch.testing.assert_close(chunked, whole)
    torch.testing.assert_close(chunked_grad, whole_grad)


@needs_cuda
@pytest.mark.parametrize('impl', ['fast', 'mmcv', 'triton'])
def test_cuda_kernels_match_reference(impl):
    if impl == 'mmcv' and not correlation_module.mmcv_correlation_available():
        pytest.skip('full mmcv not installed')
    if impl == 'triton' and not correlation_module.triton_available():
        pytest.skip('triton not installed')
    torch.manual_seed(0)
    shape, d = (3, 64, 14, 12), 7
    f1 = torch.randn(shape, device='cuda', requires_grad=True)
    f2 = torch.randn(shape, device='cuda', requires_grad=True)
    grad_out = torch.randn(3, 225, 14, 12, device='cuda')
    results = []
    for name in (impl, 'reference'):
        out = local_correlation(f1, f2, d, impl=name)
        results.append((out, ) + torch.autograd.grad(out, (f1, f2), grad_out))
    for got, expected in zip(*results):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
