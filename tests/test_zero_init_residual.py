"""``MotionSqueeze(zero_init_residual=True)``: a warm start from a network
without MS (MMAction2's TSM) that starts exactly at that network's outputs
and learns from there; the paper's init stays the default."""
import copy
from pathlib import Path

import pytest
import torch
from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample
from mmengine.config import Config
from mmengine.hub import get_config
from mmengine.optim import build_optim_wrapper

from msnet_plugin.datasets.synthetic_motion import generate_dataset_clip
from msnet_plugin.models import MotionSqueeze

pytestmark = pytest.mark.usefixtures('one_thread')
from repo_paths import REPO
CHANNELS, SEGMENTS = 16, 4


def small_ms(**kwargs):
    torch.manual_seed(0)
    return MotionSqueeze(CHANNELS, num_segments=SEGMENTS, patch_size=5,
                         reduced_channels=8, **kwargs)


def features(seed=0):
    return torch.randn(2 * SEGMENTS, CHANNELS, 8, 8,
                       generator=torch.Generator().manual_seed(seed))


def parameters_with_zero_gradient(module, steps=3):
    """Names of the parameters whose gradient is still all zero (or None)
    at the last of ``steps`` SGD steps on a loss that wants a change."""
    optimizer = torch.optim.SGD(module.parameters(), lr=0.1, momentum=0.9)
    target = torch.randn(2 * SEGMENTS, CHANNELS, 8, 8,
                         generator=torch.Generator().manual_seed(1))
    for step in range(steps):
        optimizer.zero_grad()
        x = features(step)
        (module(x) - x - target).pow(2).mean().backward()
        if step < steps - 1:
            optimizer.step()
    return [
        name for name, parameter in module.named_parameters()
        if parameter.grad is None or not parameter.grad.any()
    ]


@pytest.mark.parametrize('training', [True, False])
def test_zero_init_residual_is_exactly_the_identity(training):
    module = small_ms(zero_init_residual=True).train(training)
    x = features()
    assert torch.equal(module(x), x)
    assert module.motion_features(x).abs().sum() > 0  # motion is there


def test_zero_init_residual_resets_to_zero_in_init_weights():
    module = small_ms(zero_init_residual=True)
    with torch.no_grad():
        module.residual_scale.weight.fill_(3)
    module.init_weights()
    assert not module.residual_scale.weight.any()


def test_paper_init_is_the_default_and_adds_no_tensor():
    default = small_ms()
    assert not hasattr(default, 'residual_scale')
    assert default.state_dict().keys() == small_ms(
        zero_init_residual=False).state_dict().keys()
    x = features()
    assert not torch.equal(default(x), x)


@pytest.mark.parametrize('with_cp', [False, True])
def test_every_ms_parameter_learns_within_the_first_steps(with_cp):
    """Step 1 moves residual_scale off zero; from then on every parameter
    of the module gets a gradient (also through the recomputed tail and
    under activation checkpointing)."""
    module = small_ms(zero_init_residual=True, with_cp=with_cp).train()
    assert parameters_with_zero_gradient(module, steps=2) == []


def test_zeroing_the_last_bn_instead_would_freeze_the_module():
    """Why the option is a scale and not a zero BN weight (ResNet's
    zero_init_residual): the last BN is followed by a ReLU, which passes no
    gradient where its input is 0, so nothing of MS would ever learn."""
    module = small_ms().train()
    last_bn = module.transform[-1][-1][1]
    with torch.no_grad():
        last_bn.weight.zero_()
        last_bn.bias.zero_()
    x = features()
    assert torch.equal(module(x), x)
    frozen = parameters_with_zero_gradient(module, steps=3)
    assert frozen == [name for name, _ in module.named_parameters()]


def test_tsm_optimizer_constructor_trains_every_ms_parameter():
    """MMAction2's TSMOptimWrapperConstructor files parameters by layer
    type and silently leaves out a bare nn.Parameter of a module with
    children: residual_scale must land in a parameter group."""
    cfg = Config.fromfile(REPO / 'configs' / 'msnet_tsm_r50_sthv2.py')
    _, msnet = demo_models()
    optim_wrapper = build_optim_wrapper(msnet, cfg.optim_wrapper)
    optimized = {id(parameter) for group in optim_wrapper.param_groups
                 for parameter in group['params']}
    assert [name for name, parameter in msnet.named_parameters()
            if id(parameter) not in optimized] == []


def test_bad_zero_init_residual_is_named():
    with pytest.raises(ValueError, match='zero_init_residual'):
        small_ms(zero_init_residual='yes')


# The warm start itself, on the synthetic motion task (32 px clips).

FRAME_SIZE, SPEED, NUM_CLASSES = 32, 4, 4


def demo_models():
    """(TSM-R18, MSNet-R18 with zero_init_residual) as the demo config
    builds them; the TSM is the demo model without MS."""
    cfg = Config.fromfile(REPO / 'configs' / 'msnet_r18_demo_synthetic.py')
    msnet_cfg = copy.deepcopy(cfg.model)
    msnet_cfg.backbone.ms_cfg = dict(zero_init_residual=True)
    tsm_cfg = copy.deepcopy(cfg.model)
    tsm_cfg.backbone.type = 'ResNetTSM'
    del tsm_cfg.backbone.ms_stages, tsm_cfg.backbone.ms_cfg
    torch.manual_seed(0)
    tsm, msnet = MODELS.build(tsm_cfg), MODELS.build(msnet_cfg)
    msnet.init_weights()  # (ResNetTSM's would load pretrained=None)
    return tsm, msnet


def batch(seed, indices):
    clips, samples = [], []
    for index in indices:
        frames, label = generate_dataset_clip(seed, index, 8, FRAME_SIZE,
                                              SPEED, NUM_CLASSES)
        clips.append(torch.from_numpy(frames).permute(0, 3, 1, 2))
        samples.append(ActionDataSample().set_gt_label(label))
    return dict(inputs=clips, data_samples=samples)


def train(model, steps, seed=0, batch_size=8, lr=0.02):
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9,
                                weight_decay=1e-4)
    for step in range(steps):
        data = model.data_preprocessor(
            batch(seed, range(step * batch_size, (step + 1) * batch_size)),
            training=True)
        loss = sum(model(**data, mode='loss').values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model


def scores(model, num_clips=64):
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(batch(1, range(num_clips)))
        predictions = model(**data, mode='predict')
    return torch.stack([p.pred_score for p in predictions]), torch.tensor(
        [p.gt_label.item() for p in predictions])


def accuracy(model):
    pred_scores, labels = scores(model)
    return (pred_scores.argmax(1) == labels).float().mean().item()


@pytest.fixture(scope='module')
def trained_tsm_and_msnet():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (module scope: one_thread is per test)
    tsm, msnet = demo_models()
    train(tsm, steps=60)
    torch.set_num_threads(threads)
    missing, unexpected = msnet.load_state_dict(tsm.state_dict(),
                                                strict=False)
    assert not unexpected
    assert missing and all('.ms_layer2.' in key for key in missing)
    return tsm, msnet


@pytest.mark.slow
def test_msnet_warm_started_from_tsm_gives_tsm_scores_then_learns(
        trained_tsm_and_msnet):
    tsm, msnet = trained_tsm_and_msnet
    tsm_scores, _ = scores(tsm)
    msnet_scores, _ = scores(msnet)
    assert torch.equal(msnet_scores, tsm_scores)

    # Fine-tuning at a tenth of the lr (as the *_from_tsm.py configs do)
    # reaches TSM's accuracy on held-out clips within 20 steps.
    tsm_accuracy = accuracy(tsm)
    finetuned, accuracies = copy.deepcopy(msnet), []
    for seed in range(2, 6):
        train(finetuned, steps=5, seed=seed, lr=0.002)
        accuracies.append(accuracy(finetuned))
    assert finetuned.backbone.ms_layer2.residual_scale.weight.any()
    assert max(accuracies) >= tsm_accuracy, (tsm_accuracy, accuracies)


@pytest.mark.slow
def test_all_of_ms_gets_gradients_after_warm_start(trained_tsm_and_msnet):
    _, msnet = trained_tsm_and_msnet
    msnet = train(copy.deepcopy(msnet), steps=2, seed=3)
    ms = msnet.backbone.ms_layer2
    without = [name for name, parameter in ms.named_parameters()
               if parameter.grad is None or not parameter.grad.any()]
    assert without == []


# The fine-tuning configs: MMAction2's TSM of the same recipe, by the file
# name its model zoo publishes.

FROM_TSM = {
    'msnet_tsm_r50_k400_from_tsm':
    'tsm_imagenet-pretrained-r50_8xb16-dense-1x1x8-50e_kinetics400-rgb',
    'msnet_tsm_r50_sthv2_from_tsm':
    'tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb',
}


def zoo_entry(name):
    import mmaction
    from mmengine.fileio import load
    metafile = (Path(mmaction.__file__).parent / '.mim' / 'configs' /
                'recognition' / 'tsm' / 'metafile.yml')
    return next(model for model in load(metafile)['Models']
                if model['Name'] == name)


def test_every_from_tsm_config_is_listed():
    assert sorted(path.stem for path in (REPO / 'configs').glob(
        '*_from_tsm.py')) == sorted(FROM_TSM)


@pytest.mark.parametrize('config', sorted(FROM_TSM))
def test_from_tsm_config_loads_the_zoo_tsm_of_its_recipe(config,
                                                        without_scope):
    cfg = Config.fromfile(REPO / 'configs' / f'{config}.py')
    zoo = zoo_entry(FROM_TSM[config])
    assert Path(cfg.load_from).name == Path(zoo['Weights']).name
    assert cfg.model.backbone.ms_cfg == dict(zero_init_residual=True)
    assert cfg.model.backbone.pretrained is None
    # the zoo TSM's recipe is the MSNet recipe's base: same data and model
    zoo_cfg = get_config('mmaction::' + zoo['Config'].split(
        'configs/', 1)[1])
    for key in ('test_pipeline', 'train_pipeline'):
        assert without_scope(cfg[key]) == without_scope(zoo_cfg[key])
    assert without_scope(cfg.model.cls_head) == without_scope(
        zoo_cfg.model.cls_head)


@pytest.mark.slow
@pytest.mark.parametrize('config', sorted(FROM_TSM))
def test_from_tsm_config_starts_at_the_tsm_scores(config):
    """A TSM-R50 of the zoo recipe (PyTorch's random init), loaded into the
    fine-tuning config's MSNet: the same scores, exactly."""
    zoo = zoo_entry(FROM_TSM[config])
    tsm_cfg = get_config('mmaction::' + zoo['Config'].split(
        'configs/', 1)[1]).model
    tsm_cfg.backbone.pretrained = None
    torch.manual_seed(0)
    tsm = MODELS.build(tsm_cfg).eval()
    generator = torch.Generator().manual_seed(0)
    msnet = MODELS.build(
        Config.fromfile(REPO / 'configs' / f'{config}.py').model)
    msnet.init_weights()
    missing, unexpected = msnet.load_state_dict(tsm.state_dict(),
                                                strict=False)
    assert not unexpected and all('.ms_layer2.' in key for key in missing)
    msnet.eval()
    frames = torch.rand(1, 8, 3, 64, 64, generator=generator) * 255
    with torch.no_grad():
        expected = tsm(tsm.data_preprocessor(dict(inputs=[frames[0]], data_samples=None))['inputs'],
                       mode='tensor')
        got = msnet(msnet.data_preprocessor(dict(inputs=[frames[0]], data_samples=None))['inputs'],
                    mode='tensor')
    assert torch.isfinite(expected).all() and torch.equal(got, expected)
