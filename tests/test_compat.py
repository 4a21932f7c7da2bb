"""Tests for :mod:`msnet_plugin.compat` (CPU only, no network)."""
import collections
import io
import os
import pickle
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import CheckpointLoader, Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn

import msnet_plugin.compat as compat

compat.apply()

import mmaction.models  # noqa: E402  (works only after compat.apply())
from mmaction.registry import MODELS  # noqa: E402


def test_apply_is_idempotent():
    safe_globals_before = len(torch.serialization.get_safe_globals())
    compat.apply()
    compat.apply()
    assert len(torch.serialization.get_safe_globals()) == safe_globals_before
    assert (CheckpointLoader._get_checkpoint_loader('torchvision://resnet50')
            is compat.load_from_torchvision_or_hub_cache)


def run_python(script, *args):
    result = subprocess.run([sys.executable, '-c', script, *map(str, args)],
                            capture_output=True, text=True, timeout=300)
    return result.returncode, result.stdout, result.stderr


GUEST_SCRIPT = '''
import importlib, pkgutil
import msnet_plugin
for module in pkgutil.walk_packages(msnet_plugin.__path__, 'msnet_plugin.'):
    try:
        importlib.import_module(module.name)
    except ModuleNotFoundError as error:  # an optional package (triton)
        assert error.name == 'triton', error
from mmengine.dist import utils as dist_utils
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.model.wrappers import MMDistributedDataParallel
from mmaction.models.heads.base import BaseHead
def defined_in(function, path):
    return function.__code__.co_filename.endswith(path)
assert type(get_file_backend('/a/plain/path.pth')) is LocalBackend
assert defined_in(BaseHead.loss_by_feat, 'mmaction/models/heads/base.py')
assert defined_in(dist_utils._init_dist_pytorch, 'mmengine/dist/utils.py')
assert defined_in(MMDistributedDataParallel.__init__,
                  'mmengine/model/wrappers/distributed.py')
print('upstream untouched')
'''


@pytest.mark.slow
def test_importing_every_module_of_the_plugin_changes_no_upstream_code():
    returncode, stdout, stderr = run_python(GUEST_SCRIPT)
    assert returncode == 0, stderr[-3000:]
    assert stdout.split() == ['upstream', 'untouched']


def test_import_without_mmcv_says_how_to_install_it():
    returncode, _, stderr = run_python(
        "import sys; sys.modules['mmcv'] = None; import msnet_plugin")
    assert returncode != 0
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith('ImportError: msnet_plugin needs mmcv')
    assert 'pip install -e ".[lite]"' in last_line
    assert 'mmcv==2.1.0' in last_line


PROBE_SCRIPT = '''
import sys, importlib.util
spec = importlib.util.spec_from_file_location('compat_alone', sys.argv[1])
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
before = compat.mmengine_checkpoints_fail_safe_loading()
compat.apply()
print(before, compat.mmengine_checkpoints_fail_safe_loading())
'''


@pytest.mark.slow
def test_safe_loading_probe_sees_the_defect_and_its_fix():
    """On torch >= 2.6 with mmengine 0.10.7, mmengine's loader refuses its
    own checkpoints until the allowlist is applied."""
    returncode, stdout, stderr = run_python(PROBE_SCRIPT, compat.__file__)
    assert returncode == 0, stderr[-3000:]
    assert stdout.split() == ['True', 'False']


LAUNCHER_SCRIPT = '''
import sys
from mmengine.dist import utils as dist_utils
from msnet_plugin import compat
for launcher in sys.argv[1:]:
    compat.prepare_launcher(launcher)
    print(dist_utils._init_dist_pytorch is compat.init_dist_pytorch_on_cpu)
'''


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason='the CPU path')
def test_cpu_distributed_workaround_only_for_a_pytorch_launch():
    returncode, stdout, stderr = run_python(LAUNCHER_SCRIPT, 'none',
                                            'pytorch')
    assert returncode == 0, stderr[-3000:]
    assert stdout.split() == ['False', 'True']


EXIT_SCRIPT = '''
import atexit, logging, sys
from msnet_plugin import compat
marker, log_file = sys.argv[1], sys.argv[2]

class TornDownAtFinalization:
    def __del__(self, open=open, marker=marker):
        open(marker, 'a').write('finalized ')

torn_down = TornDownAtFinalization()
atexit.register(lambda: open(marker, 'a').write('atexit '))
logger = logging.getLogger('run')
logger.addHandler(logging.FileHandler(log_file))
logger.warning('last log line')
sys.stdout.write('last output, no newline')
compat.exit_skipping_finalization(3)
'''


@pytest.mark.slow
def test_exit_skipping_finalization_keeps_output_logs_and_atexit(tmp_path):
    """Workaround 7 ends the process before the teardown where it can crash
    (an object's __del__ never runs), and loses nothing an exit writes."""
    marker, log_file = tmp_path / 'marker', tmp_path / 'run.log'
    returncode, stdout, stderr = run_python(EXIT_SCRIPT, marker, log_file)
    assert returncode == 3, stderr[-3000:]
    assert stdout.endswith('last output, no newline')
    assert log_file.read_text() == 'last log line\n'
    assert marker.read_text() == 'atexit '


# --- a. DRN missing from the mmaction2 wheel --------------------------------

FRESH_IMPORT_SCRIPT = '''
import importlib.util, sys
try:
    import mmaction.models
    print('imported without compat')
except ModuleNotFoundError as error:
    assert 'mmaction.models.localizers.drn' in str(error), error
    print('failed without compat')
spec = importlib.util.spec_from_file_location('compat_alone', sys.argv[1])
compat_alone = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat_alone)
compat_alone.apply()
import mmaction.models
from mmaction.registry import MODELS
assert MODELS.get('ResNetTSM') is mmaction.models.ResNetTSM
print('imported with compat')
'''


@pytest.mark.slow
def test_fresh_interpreter_imports_mmaction_models_after_apply():
    """compat.py on its own (not via the package) fixes the import."""
    result = subprocess.run(
        [sys.executable, '-c', FRESH_IMPORT_SCRIPT, compat.__file__],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == 'imported with compat'


def test_stub_drn_raises_clear_error():
    drn_module = sys.modules['mmaction.models.localizers.drn.drn']
    if getattr(drn_module, '__file__', None):
        pytest.skip('the installed mmaction2 has the real DRN')
    with pytest.raises(ImportError, match='missing from the installed'):
        drn_module.DRN()
    assert 'DRN' not in MODELS.module_dict


# --- b. mmengine checkpoints under weights_only=True ------------------------

class ToyModel(BaseModel):
    """Linear + BatchNorm regressor; counts its training steps."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)
        self.bn = nn.BatchNorm1d(1)
        self.train_steps = 0

    def forward(self, inputs, labels, mode='tensor'):
        outputs = self.bn(self.linear(inputs)).squeeze(1)
        if mode == 'loss':
            self.train_steps += 1
            return dict(loss=((outputs - labels)**2).mean())
        if mode == 'predict':
            return [dict(pred=o, label=t) for o, t in zip(outputs, labels)]
        return outputs


class ToyDataset(torch.utils.data.Dataset):
    """Eight samples, with a ``metainfo`` that mmengine saves in ``meta``."""
    metainfo = dict(classes=('a', 'b'))

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return dict(inputs=torch.full((2, ), float(index)),
                    labels=torch.tensor(float(index % 2)))


class MeanAbsoluteError(BaseMetric):
    """Returns a numpy scalar, as mmaction's metrics do."""

    def process(self, data_batch, data_samples):
        self.results.extend(
            float((s['pred'] - s['label']).abs()) for s in data_samples)

    def compute_metrics(self, results):
        return dict(mae=np.float64(np.mean(results)))


def build_toy_runner(work_dir, name, max_epochs, resume=False):
    loader = dict(dataset=ToyDataset(), batch_size=4,
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='default_collate'))
    return Runner(
        model=ToyModel(), work_dir=str(work_dir), experiment_name=name,
        train_dataloader=loader, val_dataloader=loader,
        val_evaluator=[MeanAbsoluteError()], val_cfg=dict(),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        default_hooks=dict(checkpoint=dict(
            type='CheckpointHook', interval=1, save_best='mae', rule='less')),
        resume=resume, log_level='WARNING')


@pytest.mark.slow
def test_mmengine_checkpoint_loads_safely_and_resumes(tmp_path):
    build_toy_runner(tmp_path, f'first_{tmp_path.name}', max_epochs=2).train()
    checkpoint = torch.load(tmp_path / 'epoch_2.pth', weights_only=True)
    loss_history = checkpoint['message_hub']['log_scalars']['train/loss']
    assert isinstance(loss_history, HistoryBuffer)
    assert np.isfinite(loss_history.statistics('mean'))
    assert isinstance(checkpoint['message_hub']['runtime_info']['best_score'],
                      np.float64)

    resumed = build_toy_runner(tmp_path, f'second_{tmp_path.name}',
                               max_epochs=3, resume=True)
    resumed.train()
    assert resumed.epoch == 3
    assert resumed.model.train_steps == 2  # only epoch 3: 8 samples / 4


class RunsOnUnpickle:
    """Pickles as a call to ``reduce_value`` (an attack on ``torch.load``)."""

    def __init__(self, reduce_value):
        self.reduce_value = reduce_value

    def __reduce__(self):
        return self.reduce_value


@pytest.mark.parametrize('attack', ['open', 'system'])
@pytest.mark.parametrize('load', [
    lambda path: _load_checkpoint(path, map_location='cpu'),
    lambda path: CheckpointLoader.load_checkpoint(path),
])
def test_malicious_checkpoint_is_refused(tmp_path, attack, load):
    side_effect = tmp_path / 'side_effect'
    calls = dict(open=(open, (str(side_effect), 'w')),
                 system=(os.system, (f'touch {side_effect}', )))
    path = str(tmp_path / 'evil.pth')
    torch.save(dict(state_dict=RunsOnUnpickle(calls[attack])), path)
    with pytest.raises(pickle.UnpicklingError):
        load(path)
    assert not side_effect.exists()


@pytest.mark.parametrize('owner, name', [(HistoryBuffer, '__init__'),
                                         (collections.OrderedDict,
                                          'fromkeys')])
def test_getattr_is_narrowed_to_history_buffer_methods(tmp_path, owner, name):
    path = tmp_path / 'getattr.pth'
    torch.save(RunsOnUnpickle((getattr, (owner, name))), path)
    with pytest.raises(pickle.UnpicklingError, match='not allowed in a'):
        torch.load(path, weights_only=True)


def test_numpy_1_pickle_names_load(tmp_path):
    """Checkpoints written under numpy 1.x name ``numpy.core.multiarray``."""
    buffer = io.BytesIO()
    torch.save(dict(history=np.arange(3.0), best_score=np.float64(0.5)),
               buffer, _use_new_zipfile_serialization=False)  # plain pickle
    numpy_1_bytes = buffer.getvalue().replace(b'numpy._core.multiarray',
                                              b'numpy.core.multiarray')
    assert b'numpy.core.multiarray' in numpy_1_bytes
    loaded = torch.load(io.BytesIO(numpy_1_bytes), weights_only=True)
    np.testing.assert_array_equal(loaded['history'], np.arange(3.0))
    assert loaded['best_score'] == 0.5


# --- c. torchvision:// without torchvision ----------------------------------

@pytest.fixture
def hub_checkpoints(tmp_path, monkeypatch):
    """Empty torch hub dir (what ``torch.hub.set_dir`` sets, undone after
    the test) and no importable torchvision."""
    monkeypatch.setattr(torch.hub, '_hub_dir', str(tmp_path / 'hub'))
    monkeypatch.setitem(sys.modules, 'torchvision', None)
    return tmp_path / 'hub' / 'checkpoints'


def torchvision_resnet_state_dict(depth):
    """Random weights with torchvision's ResNet key names and shapes, made by
    renaming the keys of mmaction's 2D ``ResNet``."""
    renames = [(r'^conv1\.conv\.', 'conv1.'), (r'^conv1\.bn\.', 'bn1.'),
               (r'\.conv(\d)\.conv\.', r'.conv\1.'),
               (r'\.conv(\d)\.bn\.', r'.bn\1.'),
               (r'\.downsample\.conv\.', '.downsample.0.'),
               (r'\.downsample\.bn\.', '.downsample.1.')]
    state_dict = collections.OrderedDict()
    resnet = mmaction.models.ResNet(depth=depth)
    for key, value in resnet.state_dict().items():
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        state_dict[key] = torch.rand_like(value.float()).to(value.dtype)
    num_features = 512 if depth < 50 else 2048
    state_dict['fc.weight'] = torch.rand(1000, num_features)
    state_dict['fc.bias'] = torch.rand(1000)
    return state_dict


def assert_tsm_has_weights(backbone, state_dict):
    assert torch.equal(backbone.conv1.conv.weight, state_dict['conv1.weight'])
    assert torch.equal(backbone.conv1.bn.running_mean,
                       state_dict['bn1.running_mean'])
    # the conv of each block's conv1 sits inside a TemporalShift (``.net``)
    assert torch.equal(backbone.layer1[0].conv1.conv.net.weight,
                       state_dict['layer1.0.conv1.weight'])
    assert torch.equal(backbone.layer4[0].downsample.conv.weight,
                       state_dict['layer4.0.downsample.0.weight'])


@pytest.mark.parametrize('prefix', ['torchvision://', 'modelzoo://'])
def test_torchvision_scheme_without_cache_explains_fix(hub_checkpoints,
                                                       prefix):
    with pytest.raises(compat.TorchvisionUnavailableError) as error:
        _load_checkpoint(f'{prefix}resnet50', map_location='cpu')
    message = str(error.value)
    assert 'torchvision is not installed' in message
    assert 'model.backbone.pretrained=/path/to/resnet50.pth' in message
    assert str(hub_checkpoints) in message


def test_torchvision_scheme_uses_hub_cache(hub_checkpoints):
    state_dict = torchvision_resnet_state_dict(depth=18)
    hub_checkpoints.mkdir(parents=True)
    torch.save(state_dict, hub_checkpoints / 'resnet18-f37072fd.pth')
    backbone = mmaction.models.ResNetTSM(
        depth=18, pretrained='torchvision://resnet18')
    backbone.init_weights()
    assert_tsm_has_weights(backbone, state_dict)


def test_torchvision_scheme_delegates_when_torchvision_installed(
        hub_checkpoints, monkeypatch):
    monkeypatch.setitem(sys.modules, 'torchvision',
                        types.ModuleType('torchvision'))
    monkeypatch.setattr(compat, '_original_load_from_torchvision',
                        lambda filename, map_location: dict(url=filename))
    assert _load_checkpoint('torchvision://resnet50') == dict(
        url='torchvision://resnet50')
