"""Workarounds for upstream defects, each applied only where it is needed.

At import, ``msnet_plugin/__init__.py`` calls :func:`apply`, which applies
only what the plugin cannot work without, and each of those only where its
defect is found on the installed packages (the defect itself is probed, not
a version number):

1. Missing DRN package (mmaction2). The 1.2.0 wheel ships without
   ``mmaction/models/localizers/drn/``, but ``localizers/__init__.py`` imports
   ``.drn.drn.DRN``, so ``import mmaction.models`` fails with
   ``No module named 'mmaction.models.localizers.drn'``. Upstream:
   open-mmlab/mmaction2#2714, open as of mmaction2 1.2.0. Probe: the folder
   is missing on disk. Workaround: stub modules in ``sys.modules`` whose
   ``DRN`` raises :class:`ImportError` when constructed; the stub is not
   registered in any registry.
2. mmengine checkpoints vs. safe loading (mmengine, with torch >= 2.6).
   torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine's
   loaders call ``torch.load`` without ``weights_only``, and the checkpoints
   mmengine writes hold non-tensor objects, so ``tools/test.py``, ``--resume``
   and ``load_from`` fail with ``UnpicklingError``. Upstream: reported as
   open-mmlab/mmengine#1655; reported fixed on mmengine's main branch, not
   in 0.10.7. Probe: mmengine's own local loader reads a small checkpoint
   holding a ``HistoryBuffer`` (what its Runner writes) and fails. Workaround:
   keep safe loading and allowlist exactly the globals mmengine writes
   (:data:`MMENGINE_SAFE_GLOBALS`).
3. ``torchvision://`` needs torchvision (mmengine). mmengine's
   ``load_from_torchvision`` imports torchvision only to look up the
   download URL; MMAction2's TSM recipes default to
   ``pretrained='torchvision://resnet50'``. By design upstream (no issue);
   as of mmengine 0.10.7. Probe: torchvision cannot be found. Workaround:
   load ``{name}-*.pth`` from torch hub's checkpoint cache, or raise
   :class:`TorchvisionUnavailableError`, which says how to pass a local file.

Two more are applied only by the runs that need them:

4. ``_base_ = 'mmaction::...'`` needs ``pkg_resources`` (mmengine 0.10.7),
   which setuptools removed in 82.0.0; configs are parsed before any plugin
   is imported, so ``setup.cfg`` requires ``setuptools<82`` (install time).
5. Distributed training without an accelerator (mmengine 0.10.7, no upstream
   issue found). With ``--launcher pytorch`` on a CPU-only torch,
   ``_init_dist_pytorch`` calls ``torch.cuda.set_device`` and defaults to
   ``nccl``, and ``Runner.wrap_model`` passes ``device_ids`` to
   DistributedDataParallel, which torch rejects for CPU modules.
   ``tools/train.py`` and ``tools/test.py`` call :func:`prepare_launcher`,
   which applies :func:`allow_distributed_on_cpu` to such a run only.

6. mmdeploy's ONNX export under torch >= 2.9 (mmdeploy 1.3.1).
   ``torch.onnx.export`` defaults to the dynamo exporter since torch 2.9;
   mmdeploy's ``torch2onnx`` calls it without ``dynamo`` and its function
   rewriter, written for the TorchScript exporter, then fails with
   ``KeyError: -1`` (``_wrapped_fns_to_patch.pop(-1)``), for every
   MMAction2 recognizer. Upstream: no mmdeploy issue names it (closest:
   open-mmlab/mmdeploy#2906, "function rewriting fails", no details);
   mmdeploy's last release, 1.3.1, predates torch 2.9. Probe: the
   ``dynamo`` argument of ``torch.onnx.export`` defaults to True.
   Workaround: :func:`torchscript_onnx_export`, a context manager the user
   opens around mmdeploy's conversion (docs/deploy.md); inside it
   ``torch.onnx.export`` defaults to ``dynamo=False``.
7. A process that ran a process group can abort at exit (torch 2.13).
   After training with ``--launcher pytorch`` on the CPU, even once
   ``destroy_process_group`` has run, a rank sometimes dies in the
   interpreter's finalization (``terminate called without an active
   exception``, SIGABRT or SIGSEGV, no Python frame), so torchrun reports
   the finished run as failed. Upstream: pytorch/pytorch#190489 (C++ worker
   threads racing the interpreter's teardown), open. Reproduced with torch
   alone: two gloo processes, DDP, two steps, a barrier and
   ``destroy_process_group`` fail 2 runs in 40 on a busy 2-core machine.
   Probe: none (a race); it applies to processes that closed a process
   group (:func:`msnet_plugin.launch.end_distributed_run` says so).
   Workaround: :func:`exit_skipping_finalization`, called by
   ``tools/train.py`` and ``tools/test.py`` at the end of such a run.

The bfloat16 fix for MMAction2's head loss lives in
:class:`msnet_plugin.optim.CPUAmpOptimWrapper` (the only place bfloat16 scores
arise), and atomic checkpoint writes in :mod:`msnet_plugin.fileio` (a file
backend that configs choose). docs/compatibility.md lists each workaround,
its upstream state and when to delete it.
"""
import atexit
import contextlib
import functools
import glob
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import os.path as osp
import pickle
import sys
import tempfile
import types
from typing import NoReturn

import numpy as np
import torch
import torch.distributed as torch_dist
from mmengine.device import get_device
from mmengine.dist import utils as mmengine_dist_utils
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model.wrappers import MMDistributedDataParallel
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint

_DRN_PACKAGE = 'mmaction.models.localizers.drn'
_TORCHVISION_PREFIXES = ('torchvision://', 'modelzoo://')
_original_load_from_torchvision = mmengine_checkpoint.load_from_torchvision


def _numpy_multiarray_function(name):
    """Return a ``numpy`` multiarray function, registered under its numpy 1.x
    and 2.x pickle names so checkpoints written with either one load."""
    try:
        multiarray = importlib.import_module('numpy._core.multiarray')
    except ImportError:  # numpy 1.x before the ``numpy._core`` rename
        multiarray = importlib.import_module('numpy.core.multiarray')
    function = getattr(multiarray, name)
    return [(function, f'numpy.{package}.multiarray.{name}')
            for package in ('core', '_core')]


def _history_buffer_method(owner, name):
    """Stand-in for ``builtins.getattr`` in safe loading.

    Pickle protocol 2 stores ``HistoryBuffer.mean`` (kept in the buffer's
    ``statistics_methods``) as ``getattr(HistoryBuffer, 'mean')``. Only that
    lookup is allowed; a real ``getattr`` would reach any attribute.
    """
    if owner is HistoryBuffer and name in ('min', 'max', 'current', 'mean'):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({owner!r}, {name!r}) is not allowed in a checkpoint')


#: Globals found in checkpoints that mmengine 0.10.7's Runner writes. The
#: ``getattr`` entry is the narrowed :func:`_history_buffer_method`. The numpy
#: types are what ``HistoryBuffer`` (float64, int64 arrays) and numpy metric
#: values (``best_score``) need.
MMENGINE_SAFE_GLOBALS = (
    HistoryBuffer,
    (_history_buffer_method, 'builtins.getattr'),
    np.ndarray,
    np.dtype,
    type(np.dtype(np.float64)),
    type(np.dtype(np.int64)),
    *_numpy_multiarray_function('_reconstruct'),
    *_numpy_multiarray_function('scalar'),
)


class TorchvisionUnavailableError(FileNotFoundError):
    """A ``torchvision://`` checkpoint was asked for, but torchvision is not
    installed and torch hub's cache does not have the file."""


class _MissingDRN:
    """Stands in for mmaction2's DRN, which the installed wheel lacks."""

    def __init__(self, *args, **kwargs):
        raise ImportError(
            'DRN is missing from the installed mmaction2 wheel '
            '(open-mmlab/mmaction2#2714); install mmaction2 from source '
            'to use it.')


def _drn_missing_on_disk():
    """Whether mmaction is installed without ``localizers/drn/drn.py``.
    This checks the disk and imports nothing."""
    spec = importlib.util.find_spec('mmaction')
    if spec is None:
        return False
    return not any(
        osp.isfile(osp.join(root, 'models', 'localizers', 'drn', 'drn.py'))
        for root in spec.submodule_search_locations or ())


def _new_module(name, is_package, **attributes):
    """Create an empty module with a spec and the given attributes."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(
        name, None, is_package=is_package)
    if is_package:
        module.__path__ = []
    vars(module).update(attributes)
    return module


def stub_missing_drn():
    """Workaround 1: add stub DRN modules if the wheel lacks them."""
    if _DRN_PACKAGE in sys.modules or not _drn_missing_on_disk():
        return
    drn_module = _new_module(f'{_DRN_PACKAGE}.drn', False, DRN=_MissingDRN)
    sys.modules[_DRN_PACKAGE] = _new_module(
        _DRN_PACKAGE, True, drn=drn_module)
    sys.modules[drn_module.__name__] = drn_module


def mmengine_checkpoints_fail_safe_loading():
    """Probe of defect 2: whether mmengine's own local loader refuses a
    checkpoint holding a ``HistoryBuffer``, as every checkpoint its Runner
    writes does. Writes and reads one small temporary file."""
    with tempfile.TemporaryDirectory() as folder:
        path = osp.join(folder, 'probe.pth')
        torch.save(dict(message_hub=HistoryBuffer([1.0], [1])), path)
        try:
            mmengine_checkpoint.load_from_local(path, map_location='cpu')
        except pickle.UnpicklingError:
            return True
    return False


def allow_mmengine_checkpoints():
    """Workaround 2: allowlist mmengine's globals for ``weights_only``."""
    torch.serialization.add_safe_globals(list(MMENGINE_SAFE_GLOBALS))


def _torchvision_installed():
    """Whether torchvision can be found (without importing it)."""
    if 'torchvision' in sys.modules:  # imported, or blocked with None
        return sys.modules['torchvision'] is not None
    return importlib.util.find_spec('torchvision') is not None


def load_from_torchvision_or_hub_cache(filename, map_location=None):
    """Load ``torchvision://NAME`` (or ``modelzoo://NAME``).

    This uses mmengine's loader when torchvision is installed. Otherwise it
    loads ``NAME-*.pth`` from torch hub's checkpoint cache, with
    ``weights_only=True``.
    """
    if _torchvision_installed():
        return _original_load_from_torchvision(filename, map_location)
    model_name = filename.split('://', 1)[1]
    cache_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    cached = sorted(glob.glob(osp.join(cache_dir, f'{model_name}-*.pth')))
    if not cached:
        raise TorchvisionUnavailableError(
            f'torchvision is not installed, so {filename} cannot be fetched. '
            'Download the ImageNet weights on a machine with internet (for '
            "ResNet-50, torchvision's resnet50-0676ba61.pth or "
            'resnet50-19c8e357.pth) and pass the local file, e.g. '
            '--cfg-options model.backbone.pretrained=/path/to/resnet50.pth, '
            "or pretrained='/path/to/resnet50.pth' in the config, or put it "
            f'in {cache_dir}.')
    print_log(f'torchvision is not installed; loading {filename} from '
              f'{cached[0]}', logger='current')
    return torch.load(cached[0], map_location=map_location, weights_only=True)


def load_torchvision_without_torchvision():
    """Workaround 3: route ``torchvision://`` through
    :func:`load_from_torchvision_or_hub_cache`."""
    CheckpointLoader.register_scheme(
        _TORCHVISION_PREFIXES, load_from_torchvision_or_hub_cache, force=True)


_original_init_dist_pytorch = mmengine_dist_utils._init_dist_pytorch
_original_mmddp_init = MMDistributedDataParallel.__init__


def init_dist_pytorch_on_cpu(backend, init_backend='torch', **kwargs):
    """mmengine's ``_init_dist_pytorch``, usable without an accelerator.

    On an accelerator this is mmengine's function. On the CPU it initialises
    the default process group from torchrun's ``RANK`` and ``WORLD_SIZE``
    with ``gloo`` when ``nccl`` (mmengine's default, GPU only) was asked for.
    """
    if get_device() != 'cpu':
        return _original_init_dist_pytorch(
            backend, init_backend=init_backend, **kwargs)
    if init_backend != 'torch':
        raise ValueError(f'init_backend={init_backend!r} needs an '
                         'accelerator; on the CPU only torch (gloo) works')
    if backend == 'nccl':
        print_log('No accelerator: distributed training on the CPU uses the '
                  'gloo backend instead of nccl', logger='current')
        backend = 'gloo'
    torch_dist.init_process_group(
        backend=backend, rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']), **kwargs)


def _mmddp_init_on_cpu(self, module, *args, **kwargs):
    """``MMDistributedDataParallel.__init__`` without ``device_ids`` and
    ``output_device`` when every parameter of ``module`` is on the CPU."""
    if all(p.device.type == 'cpu' for p in module.parameters()):
        kwargs.pop('device_ids', None)
        kwargs.pop('output_device', None)
    _original_mmddp_init(self, module, *args, **kwargs)


def allow_distributed_on_cpu():
    """Workaround 5, for one run: ``--launcher pytorch`` trains on a machine
    without an accelerator. Changes mmengine's ``_init_dist_pytorch`` and
    ``MMDistributedDataParallel.__init__`` in this process, so only the
    tools call it, for such a run (both stay upstream's on accelerators)."""
    mmengine_dist_utils._init_dist_pytorch = init_dist_pytorch_on_cpu
    MMDistributedDataParallel.__init__ = _mmddp_init_on_cpu


def prepare_launcher(launcher: str) -> None:
    """What a run launched with ``launcher`` needs: workaround 5 for
    ``pytorch`` on a machine without an accelerator; nothing otherwise."""
    if launcher == 'pytorch' and get_device() == 'cpu':
        allow_distributed_on_cpu()


def onnx_export_defaults_to_dynamo() -> bool:
    """Whether ``torch.onnx.export`` uses the dynamo exporter unless told
    otherwise (torch >= 2.9): the probe of workaround 6."""
    parameter = inspect.signature(torch.onnx.export).parameters.get('dynamo')
    return parameter is not None and parameter.default is True


@contextlib.contextmanager
def torchscript_onnx_export():
    """Workaround 6: within the block, ``torch.onnx.export`` defaults to
    the TorchScript exporter (``dynamo=False``; a ``dynamo`` the caller
    passes is kept), as mmdeploy 1.3.1's ``torch2onnx`` needs. Does nothing
    where the probe finds the TorchScript exporter already the default."""
    if not onnx_export_defaults_to_dynamo():
        yield
        return
    export = torch.onnx.export

    @functools.wraps(export)
    def export_with_torchscript(*args, **kwargs):
        kwargs.setdefault('dynamo', False)
        return export(*args, **kwargs)

    torch.onnx.export = export_with_torchscript
    try:
        yield
    finally:
        torch.onnx.export = export


def exit_skipping_finalization(status: int = 0) -> NoReturn:
    """Workaround 7: end this process with ``status`` without the
    interpreter's finalization, where the crash of workaround 7 happens.

    What an ordinary exit does first still happens: the functions
    registered with :mod:`atexit` run (logging's flush and close among
    them) and stdout and stderr are flushed; only the teardown of modules
    and objects is skipped.
    """
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


def apply():
    """Apply workarounds 1-3 where their defects are found. Safe to call
    more than once."""
    stub_missing_drn()
    if mmengine_checkpoints_fail_safe_loading():
        allow_mmengine_checkpoints()
    if not _torchvision_installed():
        load_torchvision_without_torchvision()
