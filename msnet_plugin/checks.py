"""Checks that catch a user's mistakes in a config before anything is built.

:func:`check_segment_counts` compares the segment counts of a recognizer's
backbone, MotionSqueeze, neck and head. They must agree: the backbone's
temporal shift and MotionSqueeze, MotionSqueezeNeck and TSMHead each regroup
the (N*T, ...) frame batch into clips of their own ``num_segments``, so a
disagreement gives a shape error deep in a forward pass or, worse, silently
mixes frames of different clips; :func:`check_frames_per_clip` holds the
pipelines' frame sampling to the same count. :func:`check_config_paths` and
:func:`check_writable_folder` name a file, folder or work directory of the
config that does not exist or cannot be written
(:class:`~msnet_plugin.errors.ConfigError`); the weights files it names are
read with :func:`msnet_plugin.checkpoints.check_checkpoint_file`.

``tools/train.py`` and ``tools/test.py`` call them right after loading the
config.
"""
import inspect
import os
import os.path as osp
import tempfile
from typing import (Any, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Tuple)

from mmaction.registry import DATASETS, MODELS

from .checkpoints import check_checkpoint_file
from .errors import ConfigError, SegmentCountError
from .models import MSResNetTSM

#: What :func:`registered_default` returns for an argument no constructor
#: takes.
UNSET = object()


def registered_default(type_name: Any, argument: str) -> Any:
    """Default of ``argument`` in the constructor of the registered model
    ``type_name`` (a name or a class; or of its bases, for arguments passed
    on by ``**kwargs``): ``inspect.Parameter.empty`` for a required
    argument, :data:`UNSET` if no constructor takes it."""
    if not isinstance(type_name, str):
        model_class = type_name
    else:
        model_class = MODELS.get(type_name.split('.')[-1])
    for klass in getattr(model_class, '__mro__', ()):
        if '__init__' not in vars(klass):
            continue
        parameter = inspect.signature(klass.__init__).parameters.get(argument)
        if parameter is not None:
            return parameter.default
    return UNSET


def _argument(module_cfg: Optional[dict], argument: str) -> Any:
    """The value of ``argument`` of a model config: set, or the default of
    its registered type; ``UNSET`` if it has none."""
    if not module_cfg:
        return UNSET
    if argument in module_cfg:
        return module_cfg[argument]
    return registered_default(module_cfg.get('type'), argument)


def check_segment_counts(model_cfg: dict) -> Dict[str, int]:
    """Raise :class:`SegmentCountError` if the segment counts of a
    recognizer config disagree.

    Looked at: ``backbone.num_segments`` (``ResNetTSM``, ``MSResNetTSM``),
    ``backbone.ms_cfg.num_segments`` (which must equal the backbone's, or half
    of it after layer1 with ``temporal_pool``), ``neck.num_segments``
    (``MotionSqueezeNeck``) and ``cls_head.num_segments`` (``TSMHead``).
    Modules without a ``num_segments`` argument are ignored.

    Args:
        model_cfg (dict): the ``model`` of a config.

    Returns:
        dict: config key -> segment count, of every count compared.
    """
    counts: Dict[str, int] = {}
    for part in ('backbone', 'neck', 'cls_head'):
        value = _argument(model_cfg.get(part), 'num_segments')
        if isinstance(value, int):
            counts[f'model.{part}.num_segments'] = value
    if len(set(counts.values())) > 1:
        listed = ', '.join(f'{key}={value}' for key, value in counts.items())
        raise SegmentCountError(
            f'segment counts disagree: {listed}. Every part regroups the '
            'batch of frames into clips of its own num_segments, so they '
            'must be equal (set them from one variable in the config).')

    backbone = model_cfg.get('backbone') or {}
    ms_segments = (backbone.get('ms_cfg') or {}).get('num_segments')
    backbone_segments = counts.get('model.backbone.num_segments')
    if ms_segments is not None and backbone_segments is not None:
        temporal_pool = _argument(backbone, 'temporal_pool') is True
        for stage in _argument(backbone, 'ms_stages') or ():
            MSResNetTSM.check_ms_segments(ms_segments, backbone_segments,
                                          temporal_pool, stage)
        counts['model.backbone.ms_cfg.num_segments'] = ms_segments
    return counts


# ------------------------------------------------------------- config paths

#: Frame samplers whose frames per sample are clip_len x num_clips.
SAMPLERS = ('SampleFrames', 'DenseSampleFrames')


def check_frames_per_clip(cfg, num_segments: Optional[int],
                          splits: Iterable[str]) -> None:
    """Raise :class:`ConfigError` if a ``SampleFrames`` step of the
    pipelines of ``splits`` gives a frame count the model cannot take.

    TSM and MotionSqueeze regroup the (N*T, ...) frame batch into clips of
    ``num_segments`` frames; ``SampleFrames`` gives ``clip_len x num_clips``
    per sample (twice that with ``twice_sample`` in test mode). Training
    needs exactly ``num_segments``, validation and testing a multiple (each
    view is one clip). Any other count ends in a shape error deep in the
    forward pass or, worse, mixes frames of different samples into one
    clip. Nothing is checked without a ``num_segments`` (a TSN backbone
    takes any count)."""
    if not isinstance(num_segments, int) or num_segments < 1:
        return
    for split in splits:
        loader = cfg.get(f'{split}_dataloader', None)
        if not isinstance(loader, Mapping):
            continue
        for key, dataset in _leaf_datasets(loader.get('dataset'),
                                           f'{split}_dataloader.dataset'):
            for index, step in enumerate(dataset.get('pipeline') or ()):
                _check_sampler(step, f'{key}.pipeline.{index}',
                               split == 'train', num_segments)


def _check_sampler(step: Any, key: str, training: bool,
                   num_segments: int) -> None:
    """Raise :class:`ConfigError` if ``step`` (at config key ``key``) is a
    frame sampler whose frame count the model cannot take."""
    if not isinstance(step, Mapping) or str(step.get(
            'type', '')).split('.')[-1] not in SAMPLERS:
        return
    clip_len, num_clips = step.get('clip_len'), step.get('num_clips', 1)
    if not isinstance(clip_len, int) or not isinstance(num_clips, int):
        return
    test_mode = bool(step.get('test_mode', False))
    views = 2 if test_mode and step.get('twice_sample') else 1
    frames = clip_len * num_clips * views
    if training and not test_mode:
        if frames == num_segments:
            return
        need = f'exactly {num_segments}'
    else:
        if frames % num_segments == 0:
            return
        need = f'a multiple of {num_segments} (each view is one clip)'
    twice = ' x 2 (twice_sample)' if views == 2 else ''
    raise ConfigError(
        f'{key} ({step["type"]}) gives {frames} frames per sample '
        f'(clip_len={clip_len} x num_clips={num_clips}{twice}), but '
        f'model.backbone.num_segments is {num_segments}: the model regroups '
        f'the frames into clips of {num_segments}, so it needs {need}; set '
        'num_clips (or num_segments) so that they agree')


def config_line(filename: Optional[str], value: Any) -> Optional[str]:
    """``'line N of FILE'`` of the first line of the config file that holds
    ``value`` as a quoted literal; None if it does not (a value set by
    ``--cfg-options``, a base config or computed in the config)."""
    if not filename or not osp.isfile(filename) or not isinstance(value,
                                                                  str):
        return None
    with open(filename, encoding='utf-8', errors='replace') as config_file:
        for number, line in enumerate(config_file, 1):
            if f"'{value}'" in line or f'"{value}"' in line:
                return f'line {number} of {filename}'
    return None


def _where(cfg, value: Any) -> str:
    line = config_line(getattr(cfg, 'filename', None), value)
    return f' ({line})' if line else ''


def _is_remote(path: str) -> bool:
    return '://' in path


def _leaf_datasets(dataset_cfg: Any, key: str) -> Iterator[Tuple[str, dict]]:
    """``(config key, dataset config)`` of each dataset a dataset config
    builds, looking inside wrappers (``RepeatDataset``'s ``dataset``,
    ``ConcatDataset``'s ``datasets``)."""
    if not isinstance(dataset_cfg, Mapping):
        return
    if isinstance(dataset_cfg.get('dataset'), Mapping):
        yield from _leaf_datasets(dataset_cfg['dataset'], f'{key}.dataset')
    elif isinstance(dataset_cfg.get('datasets'), (list, tuple)):
        for index, inner in enumerate(dataset_cfg['datasets']):
            yield from _leaf_datasets(inner, f'{key}.datasets.{index}')
    else:
        yield key, dataset_cfg


def _reads_files_it_names(dataset_cfg: Mapping) -> bool:
    """Whether the files and folders a dataset config names are read, not
    written: False for a dataset class that generates its data (its
    ``generates_data`` attribute is True, e.g. SyntheticMotionDataset), and
    for a type that is not registered (building it names the type)."""
    dataset_type = dataset_cfg.get('type')
    if isinstance(dataset_type, str):
        dataset_type = DATASETS.get(dataset_type)
    return isinstance(dataset_type, type) and not getattr(
        dataset_type, 'generates_data', False)


def _missing(cfg, key: str, value: str, path: str, kind: str) -> ConfigError:
    joined = f' (joined with data_root: {path})' if path != value else ''
    return ConfigError(
        f'{key} = {value!r}{joined}: {kind} not found{_where(cfg, value)}. '
        f'Fix the path in the config, or set it with --cfg-options '
        f'{key}=PATH')


def dataset_path_problems(cfg, split: str) -> List[ConfigError]:
    """The files and folders that ``{split}_dataloader.dataset`` names (its
    ``data_root``, ``ann_file`` and ``data_prefix`` folders, joined as
    mmengine's ``BaseDataset`` joins them) and that do not exist; datasets
    that generate their data, and types that are not registered, are
    skipped."""
    loader = cfg.get(f'{split}_dataloader', None)
    if not loader or not loader.get('dataset'):
        return []
    problems = []
    for key, dataset_cfg in _leaf_datasets(loader['dataset'],
                                           f'{split}_dataloader.dataset'):
        if not _reads_files_it_names(dataset_cfg):
            continue
        data_root = dataset_cfg.get('data_root') or ''
        if data_root and not _is_remote(data_root) and not osp.isdir(
                data_root):
            problems.append(_missing(cfg, f'{key}.data_root', data_root,
                                     data_root, 'data folder'))
            continue

        def resolve(path):
            if osp.isabs(path) or not data_root:
                return path
            return osp.join(data_root, path)

        ann_file = dataset_cfg.get('ann_file') or ''
        if ann_file and not _is_remote(ann_file):
            path = resolve(ann_file)
            if not osp.isfile(path):
                problems.append(_missing(cfg, f'{key}.ann_file', ann_file,
                                         path, 'annotation file'))
        for name, prefix in (dataset_cfg.get('data_prefix') or {}).items():
            if not isinstance(prefix, str) or not prefix or _is_remote(
                    prefix):
                continue
            path = resolve(prefix)
            if not osp.isdir(path):
                problems.append(_missing(cfg, f'{key}.data_prefix.{name}',
                                         prefix, path, 'data folder'))
    return problems


def pretrained_paths(model_cfg: Any,
                     key: str = 'model') -> Iterator[Tuple[str, str]]:
    """``(config key, path)`` of each local weights file a model config
    loads when it is initialised: ``pretrained='PATH'`` and
    ``init_cfg=dict(type='Pretrained', checkpoint='PATH')``, at any depth
    (``torchvision://``, ``https://``... are not local files)."""
    if isinstance(model_cfg, Mapping):
        for name, value in model_cfg.items():
            inner_key = f'{key}.{name}'
            if name == 'pretrained' and isinstance(value, str):
                if not _is_remote(value):
                    yield inner_key, value
            elif (name == 'checkpoint' and isinstance(value, str)
                  and model_cfg.get('type') == 'Pretrained'):
                if not _is_remote(value):
                    yield inner_key, value
            else:
                yield from pretrained_paths(value, inner_key)
    elif isinstance(model_cfg, (list, tuple)):
        for index, value in enumerate(model_cfg):
            yield from pretrained_paths(value, f'{key}.{index}')


def check_config_paths(cfg, splits=('train', 'val', 'test'),
                       weights: bool = False) -> None:
    """Raise :class:`ConfigError` naming the first file or folder of the
    config that does not exist: the datasets of ``splits`` (see
    :func:`dataset_path_problems`) and, with ``weights``, ``load_from`` and
    the weights the model loads when initialised (these are also checked
    with :func:`check_checkpoint_file`)."""
    for split in splits:
        problems = dataset_path_problems(cfg, split)
        if problems:
            raise problems[0]
    if not weights:
        return
    load_from = cfg.get('load_from', None)
    if load_from and not _is_remote(load_from) and not osp.isfile(load_from):
        raise _missing(cfg, 'load_from', load_from, load_from, 'checkpoint')
    for key, path in pretrained_paths(cfg.get('model')):
        if not osp.isfile(path):
            raise _missing(cfg, key, path, path, 'weights file')
        check_checkpoint_file(path, config=getattr(cfg, 'filename', None),
                              key=f'{key} weights')


def check_writable_folder(folder: str, key: str = 'work_dir',
                          fix: str = 'choose another with --work-dir DIR'
                          ) -> None:
    """Raise :class:`ConfigError` if ``folder`` cannot be created or a file
    cannot be written in it (tried: a temporary file is created and
    removed)."""
    if osp.exists(folder) and not osp.isdir(folder):
        raise ConfigError(f'{key} {folder} is a file, not a folder; {fix}')
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        cause = error.strerror or str(error)
        if error.filename and osp.abspath(str(error.filename)) != osp.abspath(
                folder):
            cause += f': {error.filename}'
        raise ConfigError(
            f'{key} {folder} cannot be written ({cause}); {fix}') from error
