"""The correlation kernels and the lean soft-argmax against plain references,
and the one place that chooses a kernel."""
import pytest
import torch
import torch.nn.functional as F

from msnet_plugin.models import (MotionSqueeze, kernel_soft_argmax,
                                 local_correlation,
                                 local_correlation_reference)
from msnet_plugin.models import correlation as correlation_module
from msnet_plugin.models.fast_correlation import (BlockLayout,
                                                  FastLocalCorrelation,
                                                  StripLayout,
                                                  strip_correlation,
                                                  strip_indices,
                                                  strip_rows_for)

from slow_references import per_pixel_soft_argmax

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                   reason='needs a CUDA device')
CUDA_KERNELS = ('fast', 'mmcv', 'triton')


def values_and_grads(kernel, f1, f2, grad_out):
    f1 = f1.detach().clone().requires_grad_()
    f2 = f2.detach().clone().requires_grad_()
    out = kernel(f1, f2)
    return (out, ) + torch.autograd.grad(out, (f1, f2), grad_out)


def feature_maps(shape, device='cpu'):
    """Two random maps L2-normalised over channels, as MotionSqueeze feeds
    them to the correlation (so float32 sums of 225 terms stay near 1)."""
    return tuple(
        F.normalize(torch.randn(shape, device=device), dim=1)
        for _ in range(2))


def values_per_clip(shape, d):
    return StripLayout.of(shape[2], shape[3], d).values_per_clip(shape[1])


# Heights whose strips are not 4 rows (7 and 13: strips of 7 and 1), d = 0,
# maps smaller than the window, one clip and several.
SHAPES = [((2, 3, 8, 6), 2), ((1, 5, 7, 9), 3), ((3, 4, 13, 5), 1),
          ((1, 2, 6, 6), 0), ((2, 16, 12, 10), 4), ((5, 8, 4, 4), 7),
          ((3, 4, 28, 28), 7)]


@pytest.mark.parametrize('shape,d', SHAPES)
@pytest.mark.parametrize('budget', ['one_value', 'two_clips', 'default'])
def test_fast_kernel_matches_reference_float32(shape, d, budget):
    """Values and both gradients of the eager kernel within 1e-5, with
    chunks of one clip (a budget smaller than one clip), of two clips (the
    last chunk shorter when B is odd) and the default budget."""
    chunk_elements = dict(one_value=1,
                          two_clips=2 * values_per_clip(shape, d),
                          default=None)[budget]
    torch.manual_seed(sum(shape) + d)
    f1, f2 = feature_maps(shape)
    grad_out = torch.randn(shape[0], (2 * d + 1)**2, *shape[2:])
    fast = values_and_grads(
        lambda a, b: local_correlation(a, b, d, chunk_elements=chunk_elements),
        f1, f2, grad_out)
    reference = values_and_grads(
        lambda a, b: local_correlation_reference(a, b, d), f1, f2, grad_out)
    for got, expected in zip(fast, reference):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('shape,d', SHAPES)
def test_plain_strip_formulation_matches_reference_float32(shape, d):
    """What exporters and compilers get: strip_correlation with autograd."""
    torch.manual_seed(sum(shape) + d)
    f1, f2 = feature_maps(shape)
    grad_out = torch.randn(shape[0], (2 * d + 1)**2, *shape[2:])
    plain = values_and_grads(lambda a, b: strip_correlation(a, b, d), f1, f2,
                             grad_out)
    reference = values_and_grads(
        lambda a, b: local_correlation_reference(a, b, d), f1, f2, grad_out)
    for got, expected in zip(plain, reference):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_fast_and_plain_gradcheck_float64():
    torch.manual_seed(0)
    f1 = torch.randn(3, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    f2 = torch.randn(3, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    one_clip = values_per_clip(f1.shape, 2)
    assert torch.autograd.gradcheck(
        lambda a, b: FastLocalCorrelation.apply(a, b, 2, one_clip), (f1, f2),
        fast_mode=True)
    assert torch.autograd.gradcheck(lambda a, b: strip_correlation(a, b, 2),
                                    (f1, f2), fast_mode=True)


def test_band_gather_moves_aligned_blocks_of_p_values():
    """The exporters' band gather reads whole aligned runs of P values (one
    per position and displacement row, each once), and every window starts
    at its strip's first row, inside the padded map."""
    layout = BlockLayout.of(12, 10, 3)
    window_positions, band_blocks = strip_indices(layout)
    side = 7
    assert layout.strip_width % side == layout.padded_width % side == 0
    assert (layout.window + 1) % side == 0
    assert band_blocks.numel() == band_blocks.unique().numel() == 12 * 10 * 7
    assert int(band_blocks.max()) < layout.blocks_per_clip
    windows = window_positions.view(layout.strips, layout.window)
    assert windows[:, 0].tolist() == [
        strip * layout.rows * layout.padded_width
        for strip in range(layout.strips)
    ]
    assert int(windows.max()) < layout.padded_height * layout.padded_width


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
    assert resolve('reference', f) == 'reference'
    with pytest.raises(ValueError, match="correlation_impl must be one of .* got 'cuda'"):
        resolve('cuda', f)
    with pytest.raises(ValueError, match='correlation_impl must be one of .* got None'):
        local_correlation(f, f, 1, impl=None)
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
    # Exporters and compilers get the plain strip formulation for every
    # kernel but the reference, which is plain already.
    monkeypatch.setattr(torch.onnx, 'is_in_onnx_export', lambda: True)
    for impl in ('auto', 'fast', 'mmcv', 'triton'):
        assert resolve(impl, f) == 'fast'
    assert resolve('reference', f) == 'reference'


def test_bad_arguments_name_the_problem():
    f = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match='same shape'):
        local_correlation(f, torch.zeros(1, 2, 3, 4), 1)
    with pytest.raises(ValueError, match='one device with one dtype'):
        local_correlation(f, f.double(), 1)
    with pytest.raises(ValueError, match="max_displacement must be an int "
                       ">= 0, got -1"):
        local_correlation(f, f, -1)
    with pytest.raises(ValueError, match='max_displacement.*got 1.5'):
        local_correlation(f, f, 1.5)
    with pytest.raises(ValueError, match='correlation_impl must be one of'):
        MotionSqueeze(4, correlation_impl='cuda')
    with pytest.raises(ValueError, match='correlation_impl must be one of'):
        MotionSqueeze(4, correlation_impl=None)


def correlation_node(module, x):
    """The autograd node that produced the module's correlation."""
    node = module._pair_correlation(x).grad_fn  # the in-place ReLU
    return type(node.next_functions[0][0]).__name__


@pytest.mark.parametrize('impl,node', [('auto', 'FastLocalCorrelation'),
                                       ('fast', 'FastLocalCorrelation'),
                                       ('reference', 'StackBackward0')])
def test_motion_squeeze_runs_the_kernel_it_was_given(impl, node):
    torch.manual_seed(0)
    x = torch.randn(2, 4, 6, 6, requires_grad=True)
    ms = MotionSqueeze(4, num_segments=2, reduced_channels=4, patch_size=3,
                       correlation_impl=impl)
    assert correlation_node(ms, x).startswith(node)


def test_auto_on_cuda_skips_a_kernel_that_disagrees(monkeypatch):
    """The CUDA choice, with the device faked: a kernel that differs from
    the plain formulation is skipped with a warning, one that raises too."""
    monkeypatch.setattr(correlation_module, 'mmcv_correlation_available',
                        lambda: True)
    monkeypatch.setattr(correlation_module, 'triton_available', lambda: True)
    errors = {'mmcv': 0.5, 'triton': 0.0}
    monkeypatch.setattr(correlation_module, 'kernel_error_vs_plain',
                        lambda name, device: errors[name])
    with pytest.warns(UserWarning, match="'mmcv' kernel differs"):
        choice = correlation_module._first_working_cuda_kernel('cuda')
    assert choice == 'triton'

    def broken(name, device):
        raise RuntimeError('no kernel image')

    monkeypatch.setattr(correlation_module, 'kernel_error_vs_plain', broken)
    with pytest.warns(UserWarning, match="'triton' kernel failed"):
        assert correlation_module._first_working_cuda_kernel('cuda') == 'fast'


@pytest.mark.parametrize('impl', ['fast', 'reference'])
def test_kernel_check_against_plain_formulation_runs_on_cpu(impl):
    """The check 'auto' applies to a compiled kernel on CUDA, run here on the
    CPU kernels: they agree with the plain formulation."""
    error = correlation_module.kernel_error_vs_plain(impl,
                                                     torch.device('cpu'))
    assert 0 <= error < 1e-5


def test_soft_argmax_values_and_gradients_match_the_per_pixel_reference():
    torch.manual_seed(0)
    corr = (torch.relu(torch.randn(3, 49, 5, 6, dtype=torch.float64)) *
            0.05).requires_grad_()
    disp, conf = kernel_soft_argmax(corr, 7, sigma=2.0, temperature=100.0)
    grad = torch.randn_like(disp)
    (lean_grad, ) = torch.autograd.grad(disp, corr, grad)
    ref_disp, ref_conf = per_pixel_soft_argmax(corr, 7, 100.0, sigma=2.0)
    (ref_grad, ) = torch.autograd.grad(ref_disp, corr, grad)
    torch.testing.assert_close(disp, ref_disp)
    torch.testing.assert_close(lean_grad, ref_grad)
    torch.testing.assert_close(conf, ref_conf)


def test_soft_argmax_float32_matches_the_per_pixel_reference():
    """Float32 logits 100 below the peak (clamped against denormals) give
    the per-pixel reference's values and gradients."""
    torch.manual_seed(3)
    corr = torch.rand(2, 225, 6, 7).requires_grad_()
    disp, _ = kernel_soft_argmax(corr, 15, sigma=5.0, temperature=100.0)
    ref_disp, _ = per_pixel_soft_argmax(corr, 15, 100.0, sigma=5.0)
    grad = torch.randn_like(disp)
    torch.testing.assert_close(disp, ref_disp)
    lean_grad = torch.autograd.grad(disp, corr, grad)[0]
    ref_grad = torch.autograd.grad(ref_disp, corr, grad)[0]
    # Gradients carry the factor temperature = 100: float32 rounding of two
    # summation orders differs by up to ~1e-5 on entries of size ~1.
    assert ref_grad.abs().max() > 1
    torch.testing.assert_close(lean_grad, ref_grad, rtol=0, atol=1e-4)


def test_soft_argmax_chunks_agree():
    torch.manual_seed(2)
    corr = torch.rand(5, 25, 4, 4, requires_grad=True)
    whole = kernel_soft_argmax(corr, 5, 5.0, 100.0)[0]
    (whole_grad, ) = torch.autograd.grad(whole.sum(), corr)
    for budget in (1, 2 * 25 * 16):  # one clip, two clips per chunk
        chunked = kernel_soft_argmax(corr, 5, 5.0, 100.0,
                                     chunk_elements=budget)[0]
        (chunked_grad, ) = torch.autograd.grad(chunked.sum(), corr)
        torch.testing.assert_close(chunked, whole)
        torch.testing.assert_close(chunked_grad, whole_grad)


def test_soft_argmax_rejects_a_correlation_of_the_wrong_size():
    with pytest.raises(ValueError, match='kernel_soft_argmax.*24 channels, '
                       r'expected patch_size\^2 = 5\^2'):
        kernel_soft_argmax(torch.zeros(1, 24, 2, 2), 5, 1.0, 1.0)


def cuda_kernel_or_skip(impl):
    if impl == 'mmcv' and not correlation_module.mmcv_correlation_available():
        pytest.skip('full mmcv not installed')
    if impl == 'triton' and not correlation_module.triton_available():
        pytest.skip('triton not installed')


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize('impl', CUDA_KERNELS)
@pytest.mark.parametrize('shape', [(3, 64, 14, 12), (2, 32, 28, 28)])
def test_cuda_kernels_match_reference(impl, shape):
    cuda_kernel_or_skip(impl)
    torch.manual_seed(0)
    d = 7
    f1, f2 = feature_maps(shape, 'cuda')
    grad_out = torch.randn(shape[0], 225, *shape[2:], device='cuda')
    got = values_and_grads(lambda a, b: local_correlation(a, b, d, impl=impl),
                           f1, f2, grad_out)
    expected = values_and_grads(
        lambda a, b: local_correlation_reference(a, b, d), f1, f2, grad_out)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize('impl', CUDA_KERNELS)
@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_cuda_kernels_under_autocast(impl, dtype):
    """In a half-precision autocast region the kernels take the maps in the
    precision they come in (here half, as a conv would give them) and agree
    with the float32 reference to that precision."""
    cuda_kernel_or_skip(impl)
    torch.manual_seed(0)
    shape, d = (2, 64, 14, 14), 7
    f1, f2 = feature_maps(shape, 'cuda')
    grad_out = torch.randn(2, 225, 14, 14, device='cuda')
    with torch.autocast('cuda', dtype=dtype):
        got = values_and_grads(
            lambda a, b: local_correlation(a, b, d, impl=impl), f1.to(dtype),
            f2.to(dtype), grad_out.to(dtype))
    expected = values_and_grads(
        lambda a, b: local_correlation_reference(a, b, d), f1, f2, grad_out)
    tolerance = 2e-2 if dtype == torch.float16 else 1e-1
    for a, b in zip(got, expected):
        assert a.dtype == dtype
        torch.testing.assert_close(a.float(), b, rtol=tolerance,
                                   atol=tolerance)



def test_kernel_check_tool_on_cpu(load_tool):
    """tools/check_kernels.py (run by tools/gpu_check.sh on CUDA) on the
    CPU, on one small case: 'fast' in float32 and under float16 and
    bfloat16 autocast, the CUDA kernels reported as not run, the soft-argmax
    and the kernel 'auto' picks."""
    tool = load_tool('check_kernels')
    lines, passed = tool.check(torch.device('cpu'), cases=[(2, 8, 6, 7, 2)])
    report = '\n'.join(lines)
    assert passed, report
    for precision in ('float32', 'float16 autocast', 'bfloat16 autocast'):
        assert f'| fast | {precision} | (2, 8, 6, 7, 2) |' in report
    assert '| mmcv | | | | | | | not run:' in report
    assert "'auto' picks 'fast' on cpu." in report


def test_kernel_check_tool_reports_a_wrong_kernel(load_tool, monkeypatch):
    """A kernel whose gradient is off fails the check (exit status 1)."""
    tool = load_tool('check_kernels')
    real = tool.local_correlation

    def wrong(f1, f2, d, impl='auto'):
        return real(f1, f2, d, impl=impl) * 1.001

    monkeypatch.setattr(tool, 'local_correlation', wrong)
    lines, passed = tool.check(torch.device('cpu'), cases=[(1, 4, 5, 5, 1)])
    assert not passed
    assert '| fast | float32 | (1, 4, 5, 5, 1) |' in '\n'.join(lines)
    assert 'FAILED' in '\n'.join(lines)


def test_fast_kernel_takes_non_contiguous_maps_and_gradients():
    """Channels-last maps and a transposed output gradient give the
    reference's numbers."""
    torch.manual_seed(4)
    f1, f2 = (t.contiguous(memory_format=torch.channels_last)
              for t in feature_maps((2, 6, 8, 8)))
    grad_out = torch.randn(2, 25, 8, 8).transpose(2, 3)
    fast = values_and_grads(lambda a, b: local_correlation(a, b, 2), f1, f2,
                            grad_out)
    reference = values_and_grads(
        lambda a, b: local_correlation_reference(a, b, 2), f1, f2, grad_out)
    for got, expected in zip(fast, reference):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
