"""MotionSqueeze under torch.compile: in inference as one msnet:: op
(msnet_plugin/models/compiled_inference.py), the eager module's numbers for
the module's own tensors; where autograd runs, its correlation and
soft-argmax as msnet:: ops with autograd formulas
(msnet_plugin/models/kernel_ops.py), the eager training's numbers; and
exporters keep plain operators."""
import copy

import pytest
import torch
from torch.library import opcheck

from msnet_plugin.models import MotionSqueeze
from msnet_plugin.models import kernel_ops
from msnet_plugin.models.compiled_inference import (motion_squeeze_inference,
                                                    state_tensors)
from msnet_plugin.models.soft_argmax import _max_and_first_argmax


def module_with_statistics(**kwargs) -> MotionSqueeze:
    """An eval MotionSqueeze(16) whose batch norms have running statistics
    away from 0 and 1, so that a lost buffer shows."""
    torch.manual_seed(0)
    module = MotionSqueeze(16, num_segments=4, patch_size=5, **kwargs)
    for bn in module.modules():
        if isinstance(bn, torch.nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    if kwargs.get('zero_init_residual'):
        torch.nn.init.uniform_(module.residual_scale.weight, 0.5, 1.5)
    return module.eval()


def compiled_output(module, x):
    torch._dynamo.reset()
    try:
        with torch.no_grad():
            return torch.compile(module, backend='aot_eager')(x)
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize('kwargs', [
    dict(), dict(zero_init_residual=True),
    dict(motion_input='correlation'), dict(soft_argmax='plain')])
def test_compiled_inference_gives_the_eager_output(kwargs):
    module = module_with_statistics(**kwargs)
    x = torch.randn(8, 16, 6, 7)
    with torch.no_grad():
        expected = module(x)
    torch.testing.assert_close(compiled_output(module, x), expected,
                               rtol=0, atol=0)


def test_the_op_runs_the_modules_own_tensors():
    """A copy with other weights and statistics (as an EMA copy of a model
    has) gives its own output, not the original's."""
    module = module_with_statistics()
    copied = copy.deepcopy(module)
    with torch.no_grad():
        for tensor in state_tensors(copied):
            if tensor.is_floating_point():
                tensor.mul_(1.25)
    x = torch.randn(8, 16, 6, 7)
    with torch.no_grad():
        expected = copied(x)
        assert not torch.allclose(expected, module(x))
    torch.testing.assert_close(compiled_output(copied, x), expected,
                               rtol=0, atol=0)


def test_the_op_leaves_the_random_generator_alone():
    """Its first call for a new configuration builds a module to run the
    tensors through: on the meta device, drawing no random numbers."""
    module = module_with_statistics(reduced_channels=12)
    state = state_tensors(module)
    x = torch.randn(8, 16, 6, 7)
    before = torch.get_rng_state()
    with torch.no_grad():
        got = motion_squeeze_inference(x, state, module._arguments)
        expected = module(x)
    assert torch.equal(torch.get_rng_state(), before)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_op_schema_and_fake_implementation():
    module = module_with_statistics()
    state = [tensor.detach() for tensor in state_tensors(module)]
    with torch.no_grad():
        opcheck(motion_squeeze_inference,
                (torch.randn(8, 16, 6, 7), state, module._arguments),
                test_utils=('test_schema', 'test_faketensor',
                            'test_aot_dispatch_static'))


def test_torch_export_keeps_plain_operators():
    module = module_with_statistics()
    with torch.no_grad():
        program = torch.export.export(module, (torch.randn(8, 16, 6, 7), ))
    code = str(program.graph)
    assert 'motion_squeeze_inference' not in code
    assert 'bmm' in code


def test_kernel_ops_schema_fake_and_autograd():
    torch.manual_seed(0)
    f1, f2 = (torch.nn.functional.normalize(torch.randn(3, 4, 6, 7), dim=1)
              for _ in range(2))
    opcheck(kernel_ops.local_correlation_op,
            (f1.requires_grad_(), f2.requires_grad_(), 2, 1 << 19))
    correlation = torch.relu(torch.randn(3, 25, 6, 7))
    _, best_index = _max_and_first_argmax(correlation, 5, dim=1)
    opcheck(kernel_ops.gaussian_soft_argmax_op,
            (correlation.requires_grad_(), best_index, 5, 5.0, 100.0,
             1 << 19))


def test_compiled_training_gives_the_eager_numbers():
    """A training step compiled (the kernels as msnet:: ops, the other
    layers traced): output, the input's and every parameter's gradient and
    the running statistics as in eager training."""
    torch.manual_seed(0)
    eager = MotionSqueeze(16, num_segments=4, patch_size=5).train()
    compiled = copy.deepcopy(eager)
    x = torch.randn(8, 16, 6, 7)
    grad_out = torch.randn(8, 16, 6, 7)
    results = []
    torch._dynamo.reset()
    try:
        for module in (eager, torch.compile(compiled, backend='aot_eager')):
            leaf = x.clone().requires_grad_()
            out = module(leaf)
            out.backward(grad_out)
            results.append([out, leaf.grad] +
                           [p.grad for p in (eager if module is eager
                                             else compiled).parameters()])
    finally:
        torch._dynamo.reset()
    for got, expected in zip(results[1], results[0]):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    for got, expected in zip(compiled.buffers(), eager.buffers()):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
