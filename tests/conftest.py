"""Shared test set-up.

- Every test starts in mmaction's registry scope, and the global instances a
  Runner makes current (default scope, message hub, logger, visualizer) are
  forgotten after each test, so that one test's Runner cannot change what the
  next test builds.
- Fixtures for what several test files need: ``load_tool`` (a script of
  tools/ as a module), ``tool_error`` (the exit status and the error line of
  a tool's main that stops), ``run_tool`` (a script in a fresh interpreter),
  ``small_demo_options`` (the demo config, shrunk),
  ``small_demo_amp_run`` (one training of the shrunk demo, shared by the
  whole session), ``eight_class_demo_checkpoint`` (one that does not fit),
  ``without_scope`` (a config as plain data, to compare configs) and
  ``one_thread`` (a thread guard for tiny inputs).
- The ``slow`` marker (setup.cfg) tags learning and end-to-end tests;
  ``python -m pytest -m "not slow" tests`` is the quick loop.
- Under pytest-xdist (``python -m pytest -n 2 tests``, the README's test
  command) each worker runs torch on one thread, and so do the tools it
  starts, so that two workers share two cores without oversubscribing them.
  The README's demo (the longest test) starts first, then the other slow
  tests, and a worker that runs out of tests takes some of the other's
  (xdist's work stealing), so that the short tests fill the gaps at the end
  instead of a long one starting last.
"""
import collections
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.visualization import Visualizer

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
from repo_paths import DEMO_CONFIG, REPO


def pytest_configure(config):
    if os.environ.get('PYTEST_XDIST_WORKER'):
        os.environ['OMP_NUM_THREADS'] = '1'  # for the tools' interpreters
        torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    if os.environ.get('PYTEST_XDIST_WORKER'):  # every worker sorts alike
        items.sort(key=lambda item: (
            item.name != 'test_demo_as_in_readme_learns_motion',
            item.get_closest_marker('slow') is None))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import WorkStealingScheduling
    return WorkStealingScheduling(config, log)


@pytest.fixture(autouse=True)
def isolated_mmengine_globals(monkeypatch):
    for manager in (DefaultScope, MessageHub, MMLogger, Visualizer):
        monkeypatch.setattr(manager, '_instance_dict',
                            collections.OrderedDict(manager._instance_dict))
    init_default_scope('mmaction')


def _load_tool(name):
    """tools/<name>.py as a fresh module object, to call its main(argv)."""
    name = Path(name).stem
    spec = importlib.util.spec_from_file_location(
        f'tool_{name}', REPO / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='session')
def load_tool():
    """``load_tool('train')``: tools/train.py as a module."""
    return _load_tool


@pytest.fixture
def tool_error(capsys):
    """``tool_error('test', [...])``: run tools/test.py's ``main`` on these
    arguments, which must stop; return its exit status and what it printed
    to stderr from ``error: `` on (warnings that Python prints before it
    are left out), after checking that no traceback was printed."""

    def run(name, argv):
        capsys.readouterr()
        with pytest.raises(SystemExit) as stopped:
            _load_tool(name).main([str(arg) for arg in argv])
        err = capsys.readouterr().err
        assert 'Traceback' not in err, err
        assert 'error: ' in err, err
        return stopped.value.code, err[err.index('error: '):]

    return run


def _run_tool(script, *args, cwd, check=True, one_thread=False):
    """Run tools/<script> in a fresh interpreter; return the completed
    process (stdout and stderr as text). With ``check``, a non-zero exit
    fails the test with the end of the output. ``one_thread`` runs torch on
    one CPU thread (OMP_NUM_THREADS=1), for tiny inputs as the
    ``one_thread`` fixture.

    The timeout only guards against hangs: the full demo takes ~2 min on an
    idle 2-core machine and over 20 min on a heavily loaded one.
    """
    env = dict(os.environ, PYTHONWARNINGS='ignore')
    if one_thread:
        env['OMP_NUM_THREADS'] = '1'
    result = subprocess.run(
        [sys.executable, str(REPO / 'tools' / script), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=2700, env=env)
    if check:
        assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


@pytest.fixture(scope='session')
def run_tool():
    """``run_tool('train.py', *args, cwd=...)``: see :func:`_run_tool`."""
    return _run_tool


def _small_demo_options(data_dir):
    """``--cfg-options`` that shrink the demo config to 16 tiny clips (32 px),
    one epoch, data in ``data_dir``, loaders in the foreground."""
    data_dir = Path(data_dir)
    loader = dict(num_workers=0, persistent_workers=False, batch_size=4)
    options = {
        'train_dataloader.dataset.data_root': data_dir / 'train',
        'train_dataloader.dataset.num_videos': 16,
        'val_dataloader.dataset.data_root': data_dir / 'val',
        'val_dataloader.dataset.num_videos': 8,
        'test_dataloader.dataset.data_root': data_dir / 'val',
        'test_dataloader.dataset.num_videos': 8,
        'train_cfg.max_epochs': 1,
    }
    for split in ('train', 'val', 'test'):
        for key, value in loader.items():
            options[f'{split}_dataloader.{key}'] = value
        options[f'{split}_dataloader.dataset.size'] = 32
        options[f'{split}_dataloader.dataset.speed'] = 4
    return [f'{key}={value}' for key, value in options.items()]


@pytest.fixture(scope='session')
def small_demo_options():
    """``small_demo_options(data_dir)``: see :func:`_small_demo_options`."""
    return _small_demo_options


@pytest.fixture(scope='session')
def small_demo_amp_run(tmp_path_factory):
    """``tools/train.py --amp`` on the shrunk demo (one epoch), run once for
    the whole session and shared by the tests that need a trained demo run
    rather than training again. Returns ``root`` (its cwd), ``data_dir``,
    ``work_dir`` (epoch_1.pth and the logs: copy it before writing into it),
    ``options`` (its ``--cfg-options``) and ``log`` (what the tool
    printed)."""
    root = tmp_path_factory.mktemp('small_demo_amp_run')
    options = _small_demo_options(root / 'data')
    result = _run_tool('train.py', DEMO_CONFIG, '--amp', '--work-dir',
                       root / 'work', '--cfg-options', *options, cwd=root,
                       one_thread=True)
    return SimpleNamespace(root=root, data_dir=root / 'data',
                           work_dir=root / 'work', options=options,
                           log=result.stdout + result.stderr)


@pytest.fixture(scope='session')
def eight_class_demo_checkpoint(tmp_path_factory):
    """The demo model with an 8-class head (random weights), saved as
    mmengine's Runner saves it: a checkpoint that does not fit the demo's
    4 classes."""
    model_cfg = Config.fromfile(DEMO_CONFIG).model
    model_cfg.cls_head.num_classes = 8
    path = tmp_path_factory.mktemp('eight_classes') / '8_classes.pth'
    torch.save(dict(meta=dict(epoch=1, iter=1),
                    state_dict=MODELS.build(model_cfg).state_dict()), path)
    return path


def _without_scope(value):
    """A config value as plain data, minus the ``_scope_`` keys that mmengine
    adds to what a config inherits from another package."""
    if isinstance(value, dict):
        return {
            k: _without_scope(v)
            for k, v in value.items() if k != '_scope_'
        }
    if isinstance(value, (list, tuple)):
        return [_without_scope(v) for v in value]
    return value


@pytest.fixture(scope='session')
def without_scope():
    """``without_scope(cfg.to_dict())``: see :func:`_without_scope`."""
    return _without_scope


@pytest.fixture
def one_thread():
    """Tiny inputs: with several torch threads on a shared CPU, thread
    hand-offs cost far more than the arithmetic (measured 5x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
