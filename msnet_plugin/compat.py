"""Workarounds for upstream defects; :func:`apply` applies all but the fourth.

Each workaround checks for its defect first, so it does nothing on a fixed
install. ``msnet_plugin/__init__.py`` calls :func:`apply` before anything
imports ``mmaction.models``.

1. Missing DRN package (mmaction2). The 1.2.0 wheel ships without
   ``mmaction/models/localizers/drn/``, but ``localizers/__init__.py`` imports
   ``.drn.drn.DRN``, so ``import mmaction.models`` fails with
   ``No module named 'mmaction.models.localizers.drn'``. Upstream:
   open-mmlab/mmaction2#2714, open as of mmaction2 1.2.0. Workaround: if the
   folder is missing on disk, put stub modules in ``sys.modules`` whose
   ``DRN`` raises :class:`ImportError` when constructed. The stub is not
   registered in any registry.
2. mmengine checkpoints vs. safe loading (mmengine, with torch >= 2.6).
   torch 2.6 made ``torch.load`` default to ``weights_only=True``. mmengine's
   loaders call ``torch.load`` without ``weights_only``, and the checkpoints
   mmengine writes hold non-tensor objects, so ``tools/test.py``, ``--resume``
   and ``load_from`` fail with ``UnpicklingError``. Upstream: reported as
   open-mmlab/mmengine#1655. The fix PRs open-mmlab/mmengine#1639 and #1650
   (both set ``weights_only=False``) are unmerged, so this is not fixed as
   of mmengine 0.10.7. Workaround: keep safe loading and allowlist exactly
   the globals mmengine writes (:data:`MMENGINE_SAFE_GLOBALS`).
3. ``torchvision://`` needs torchvision (mmengine). mmengine's
   ``load_from_torchvision`` imports torchvision only to look up the
   download URL. This is by design and no upstream issue was found; not
   fixed as of mmengine 0.10.7.
   MMAction2's TSM recipes default to ``pretrained='torchvision://resnet50'``.
   Workaround: when torchvision is missing, load ``{name}-*.pth`` from torch
   hub's checkpoint cache, or raise :class:`TorchvisionUnavailableError`,
   which says how to pass a local file instead.
4. ``_base_ = 'mmaction::...'`` needs ``pkg_resources`` (mmengine).
   mmengine 0.10.7 resolves package-scoped config bases with
   ``pkg_resources``, which setuptools removed in 82.0.0, so every config
   that inherits an MMAction2 recipe fails to parse with ``No module named
   'pkg_resources'``. Configs are parsed before any plugin is imported, so
   this one is handled at install time: ``setup.cfg`` requires
   ``setuptools<82``. Not fixed as of mmengine 0.10.7.
5. Checkpoints are not written atomically (mmengine). ``save_checkpoint``
   hands the bytes to the ``local`` file backend, whose ``put`` opens the
   final path and writes into it, so a crash or SIGKILL during a save leaves
   a truncated ``epoch_N.pth`` under the real name (and ``--resume PATH`` or
   a later ``load_from`` then fails on it). No upstream issue was found; not
   fixed as of mmengine 0.10.7. Workaround: register
   :class:`AtomicLocalBackend` as mmengine's ``local`` backend (the one
   every plain path gets): its ``put``/``put_text`` write a temporary file
   in the same folder, flush and fsync it, then ``os.replace`` it onto the
   final name, so the final name holds the old file or the complete new
   one, never part of one. CheckpointHook's ``last_checkpoint`` pointer is
   written after the checkpoint, with plain ``open``, so it names a complete
   file; a kill in the microseconds of that tiny write could still leave it
   empty.
6. Distributed training without an accelerator (mmengine). With
   ``--launcher pytorch`` on a CPU-only torch, mmengine 0.10.7's
   ``_init_dist_pytorch`` calls ``torch.cuda.set_device`` (``AttributeError:
   module 'torch._C' has no attribute '_cuda_setDevice'``) and defaults to
   the ``nccl`` backend, and ``Runner.wrap_model`` passes
   ``device_ids=[LOCAL_RANK]`` to DistributedDataParallel, which torch
   rejects for CPU modules (``device_ids and output_device arguments only
   work with single-device/multiple-device GPU modules``). No upstream issue
   was found; not fixed as of mmengine 0.10.7. Workaround
   (:func:`allow_distributed_on_cpu`): when mmengine's device is ``cpu``,
   initialise the process group without ``set_device``, with ``gloo`` in
   place of ``nccl``, and drop ``device_ids``/``output_device`` for modules
   whose parameters are all on the CPU. Accelerator runs are untouched.
7. bfloat16 class scores in MMAction2's head loss (mmaction2). Under
   bfloat16 autocast (``--amp`` on the CPU; also bf16 on CUDA) the head's
   scores are bfloat16, and ``BaseHead.loss_by_feat`` computes its training
   top-k accuracy with ``cls_scores.detach().cpu().numpy()``, which fails:
   ``TypeError: Got unsupported ScalarType BFloat16`` (numpy has no
   bfloat16). No upstream issue was found; not fixed as of mmaction2 1.2.0.
   Workaround (:func:`score_bfloat16_as_float32`): ``loss_by_feat`` gets
   bfloat16 scores as float32 (the loss is then computed in float32, as
   autocast does for ``cross_entropy`` anyway).
"""
import glob
import importlib
import importlib.machinery
import importlib.util
import os
import os.path as osp
import pickle
import sys
import types
import uuid

import numpy as np
import torch
from mmengine.fileio import LocalBackend, register_backend
import torch.distributed as torch_dist
from mmengine.device import get_device
from mmengine.dist import utils as mmengine_dist_utils
from mmengine.logging import HistoryBuffer, print_log
from mmengine.model.wrappers import MMDistributedDataParallel
from mmengine.runner import CheckpointLoader
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.utils import digit_version

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


def allow_mmengine_checkpoints():
    """Workaround 2: allowlist mmengine's globals for ``weights_only``."""
    if digit_version(torch.__version__) >= digit_version('2.6.0'):
        torch.serialization.add_safe_globals(list(MMENGINE_SAFE_GLOBALS))


def _torchvision_installed():
    """Whether ``import torchvision`` works."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return False
    return True


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


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose writes replace the file atomically
    (workaround 5): write a hidden temporary file in the target's folder,
    flush and fsync it, ``os.replace`` it onto the target, fsync the
    folder. Readers and a crash see the old file or the new one, whole."""

    def put(self, obj: bytes, filepath) -> None:
        filepath = str(filepath)
        folder, name = osp.split(osp.abspath(filepath))
        os.makedirs(folder, exist_ok=True)
        # opened like ``open(filepath, 'wb')``, so the umask applies
        tmp_path = osp.join(folder, f'.{name}.{uuid.uuid4().hex}.tmp')
        try:
            with open(tmp_path, 'xb') as tmp_file:
                tmp_file.write(obj)
                tmp_file.flush()
                os.fsync(tmp_file.fileno())
            os.replace(tmp_path, filepath)
        except BaseException:
            if osp.exists(tmp_path):
                os.remove(tmp_path)
            raise
        folder_handle = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(folder_handle)  # make the rename itself durable
        finally:
            os.close(folder_handle)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


def write_files_atomically():
    """Workaround 5: plain paths get :class:`AtomicLocalBackend`."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')


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
    """Workaround 6: ``--launcher pytorch`` trains on CPU-only machines."""
    mmengine_dist_utils._init_dist_pytorch = init_dist_pytorch_on_cpu
    MMDistributedDataParallel.__init__ = _mmddp_init_on_cpu


def score_bfloat16_as_float32():
    """Workaround 7: ``BaseHead.loss_by_feat`` takes bfloat16 scores."""
    from mmaction.models.heads.base import BaseHead
    original = BaseHead.loss_by_feat
    if getattr(original, '_msnet_float32_scores', False):
        return

    def loss_by_feat(self, cls_scores, data_samples):
        if (isinstance(cls_scores, torch.Tensor)
                and cls_scores.dtype == torch.bfloat16):
            cls_scores = cls_scores.float()
        return original(self, cls_scores, data_samples)

    loss_by_feat._msnet_float32_scores = True
    BaseHead.loss_by_feat = loss_by_feat


def apply():
    """Apply every workaround. Safe to call more than once."""
    stub_missing_drn()
    allow_mmengine_checkpoints()
    load_torchvision_without_torchvision()
    write_files_atomically()
    allow_distributed_on_cpu()
    score_bfloat16_as_float32()  # imports mmaction.models: after the DRN stub
