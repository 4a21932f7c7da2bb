"""--amp on the CPU: bfloat16 autocast through CPUAmpOptimWrapper."""
import re

import pytest
import torch
import torch.nn as nn
from mmaction.registry import OPTIM_WRAPPERS

from msnet_plugin.optim import CPUAmpOptimWrapper


def test_forward_runs_in_bfloat16_and_the_step_updates_float32_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 2))
    before = model[0].weight.detach().clone()
    wrapper = OPTIM_WRAPPERS.build(
        dict(type='CPUAmpOptimWrapper',
             optimizer=torch.optim.SGD(model.parameters(), lr=0.1)))
    assert isinstance(wrapper, CPUAmpOptimWrapper)
    with wrapper.optim_context(model):
        features = model[0](torch.randn(2, 3, 8, 8))
        loss = model[1:](features).float().pow(2).mean()
    assert features.dtype == torch.bfloat16
    wrapper.update_params(loss)
    assert model[0].weight.dtype == torch.float32
    assert model[0].weight.grad is None  # update_params zeroes the grads
    assert not torch.equal(model[0].weight, before)


def test_only_bfloat16_is_accepted():
    params = [nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match='only dtype bfloat16.*float16'):
        CPUAmpOptimWrapper(dtype='float16',
                           optimizer=torch.optim.SGD(params, lr=0.1))


@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
@pytest.mark.slow
def test_train_tool_amp_trains_the_demo_on_cpu(small_demo_amp_run):
    log = small_demo_amp_run.log
    assert "type='CPUAmpOptimWrapper'" in log
    losses = [float(v) for v in re.findall(r'\sloss: ([0-9.]+)', log)]
    assert losses and all(0 < loss < 10 for loss in losses), losses
    assert (small_demo_amp_run.work_dir / 'epoch_1.pth').is_file()
