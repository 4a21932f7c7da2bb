"""Checkpoints of the authors' MotionSqueeze code, converted for this plugin.

The authors' training scripts (arunos728/MotionSqueeze, ``main_something.py``
and ``main_kinetics.py``) save ``torch.save({'epoch', 'arch', 'state_dict',
'best_prec1'})``, where ``state_dict`` is that of ``DataParallel(TSN)``:

- the backbone under ``module.base_model.``, with torchvision's ResNet names:
  ``conv1``, ``bn1``; ``layerN.M.convK`` and ``layerN.M.bnK``;
  ``layerN.M.downsample.0`` (1x1 conv) and ``.1`` (BN). Their temporal shift
  has no weights;
- MotionSqueeze (after ``layer2``) as ``chnl_reduction.0`` (1x1 conv, no
  bias) and ``.1`` (BN), and ``flow_refinement.conv1`` to ``conv4``, each a
  Sequential of depthwise conv (``.0``), BN (``.1``), ReLU, pointwise conv
  (``.3``), BN (``.4``), ReLU;
- a BatchNorm ``bn2`` (128 channels) that the network never uses;
- the classifier as ``module.new_fc``, a Conv1d of weight shape
  ``(num_classes, C, 1)``, when dropout > 0 (their ``base_model.fc1`` is then
  a Dropout), else as ``module.base_model.fc1``, the same Conv1d.

In this plugin (:class:`~msnet_plugin.models.MSResNetTSM` in MMAction2's
``Recognizer2D`` with ``TSMHead``) the same tensors are:

- ``backbone.conv1.conv`` and ``backbone.conv1.bn``; ``backbone.layerN.M.
  convK.conv`` (``convK.conv.net`` where the temporal shift wraps the conv)
  and ``.convK.bn``; ``backbone.layerN.M.downsample.conv`` and ``.bn``;
- ``backbone.ms_layer2.reduce.0`` and ``.1``; ``backbone.ms_layer2.
  transform.{K-1}.0.0`` / ``.0.1`` (depthwise conv, BN) and ``.1.0`` /
  ``.1.1`` (pointwise conv, BN) for the authors' ``convK``;
- ``cls_head.fc_cls``, a Linear: the Conv1d weight without its last axis.

The networks compute the same function: the same shift (1/8 of the channels
from the next frame, 1/8 from the previous, zero padded) at the start of
every residual branch, the same MotionSqueeze, average consensus over the
segments. Their inputs, 0-1 images normalised with ImageNet's mean and std,
equal MMAction2's 0-255 images normalised with 255 times those (the configs'
``data_preprocessor``).
"""
import os.path as osp
import re
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import torch
import torch.nn as nn
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.utils import import_modules_from_strings

from ..checkpoints import (AUTHORS_BACKBONE_PREFIX, AUTHORS_SAVED_ENTRIES,
                           DATA_PARALLEL_PREFIX, compare_checkpoint_keys,
                           describe_differences, load_checkpoint_file,
                           state_dict_of)
from ..errors import AuthorsCheckpointError, ConfigMismatchError
from ..fileio import replaced_atomically
from ..models.motion_squeeze import MotionSqueeze

# (block type, blocks per stage) -> ResNet depth, as torchvision builds them.
RESNET_DEPTHS = {
    ('BasicBlock', (2, 2, 2, 2)): 18,
    ('BasicBlock', (3, 4, 6, 3)): 34,
    ('Bottleneck', (3, 4, 6, 3)): 50,
    ('Bottleneck', (3, 4, 23, 3)): 101,
    ('Bottleneck', (3, 8, 36, 3)): 152,
}
# What the authors' network fixes and this plugin makes configurable: the
# MS hyperparameters (resnet_TSM.py) and TSM's shift.
AUTHORS_MS = dict(patch_size=15, sigma=5.0, temperature=100.0,
                  soft_argmax='kernel', motion_input='displacement',
                  use_confidence=True)
AUTHORS_SHIFT = dict(is_shift=True, shift_div=8, shift_place='blockres',
                     temporal_pool=False)
# The authors' MS sits after layer2 (stage index 1).
AUTHORS_MS_STAGE = 1
UNUSED_BN = f'{AUTHORS_BACKBONE_PREFIX}bn2.'


@dataclass
class AuthorsNetwork:
    """What an authors' state dict holds, read from its tensors' names and
    shapes (``module.`` already stripped)."""
    depth: int
    block: str
    stage_blocks: Tuple[int, ...]
    classifier: str  # 'new_fc' or 'base_model.fc1'
    num_classes: int
    head_in_channels: int
    has_ms: bool
    ms_in_channels: Optional[int] = None
    ms_reduced_channels: Optional[int] = None
    ms_motion_channels: Optional[int] = None
    ms_out_channels: Optional[int] = None

    def describe(self) -> str:
        ms = (f'MotionSqueeze {self.ms_in_channels} -> '
              f'{self.ms_reduced_channels} channels' if self.has_ms else
              'no MotionSqueeze')
        return (f'ResNet-{self.depth} ({self.block}, blocks '
                f'{"-".join(map(str, self.stage_blocks))}), {ms}, '
                f'{self.num_classes} classes')


@dataclass
class Conversion:
    """Result of :func:`convert_state_dict`.

    Attributes:
        state_dict: the model's tensors by this plugin's names.
        network: what the authors' checkpoint holds.
        source_keys: plugin key -> the authors' key it came from.
        unused: the authors' keys left out (``bn2``, anything unknown).
        zero_counters: ``num_batches_tracked`` keys the checkpoint lacked,
            set to 0 (they do not change the outputs).
    """
    state_dict: Dict[str, torch.Tensor]
    network: AuthorsNetwork
    source_keys: Dict[str, str] = field(default_factory=dict)
    unused: List[str] = field(default_factory=list)
    zero_counters: List[str] = field(default_factory=list)


def authors_state_dict(checkpoint) -> Tuple[Dict[str, torch.Tensor], str]:
    """The TSN state dict of a loaded authors' checkpoint, with the
    ``module.`` of DataParallel stripped.

    Args:
        checkpoint: ``torch.load`` of the authors' file: a dict with
            ``state_dict``, or the state dict itself.

    Returns:
        tuple: the state dict, and the prefix stripped from every key
        (``'module.'`` or ``''``).
    """
    state = state_dict_of(checkpoint)
    if state is None or not all(
            isinstance(v, torch.Tensor) for v in state.values()):
        raise AuthorsCheckpointError(
            'expected the authors\' checkpoint, a dict with a "state_dict" '
            'of tensors (or that state dict), got '
            f'{type(checkpoint).__name__}'
            + (f' with keys {sorted(checkpoint)[:8]}'
               if isinstance(checkpoint, Mapping) else ''))
    prefix = ''
    if state and all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        prefix = DATA_PARALLEL_PREFIX
        state = {key[len(prefix):]: value for key, value in state.items()}
    if not any(key.startswith(AUTHORS_BACKBONE_PREFIX) for key in state):
        raise AuthorsCheckpointError(
            f'no "{AUTHORS_BACKBONE_PREFIX}" keys: not a checkpoint of the '
            f'authors\' TSN (its first keys: {list(state)[:5]})')
    return dict(state), prefix


def _weight(state: Mapping, key: str, what: str) -> torch.Tensor:
    if key not in state:
        raise AuthorsCheckpointError(f'{what} missing: no key {key!r}')
    return state[key]


def read_network(state: Mapping[str, torch.Tensor]) -> AuthorsNetwork:
    """Depth, MS channels and classes of the authors' state dict
    (``module.`` stripped)."""
    blocks = []
    for stage in range(1, 5):
        indices = {
            int(match.group(1))
            for key in state
            for match in [re.match(rf'base_model\.layer{stage}\.(\d+)\.',
                                   key)] if match
        }
        blocks.append(len(indices))
    block = ('Bottleneck'
             if 'base_model.layer1.0.conv3.weight' in state else 'BasicBlock')
    depth = RESNET_DEPTHS.get((block, tuple(blocks)))
    if depth is None:
        raise AuthorsCheckpointError(
            f'the backbone is no torchvision ResNet: {block}s, blocks per '
            f'stage {blocks}')
    if 'new_fc.weight' in state:
        classifier = 'new_fc'
    elif 'base_model.fc1.weight' in state:
        classifier = 'base_model.fc1'
    else:
        raise AuthorsCheckpointError(
            'no classifier: neither new_fc.weight (dropout > 0) nor '
            'base_model.fc1.weight (dropout 0)')
    fc_weight = state[f'{classifier}.weight']
    if fc_weight.dim() not in (2, 3) or (fc_weight.dim() == 3
                                         and fc_weight.shape[2] != 1):
        raise AuthorsCheckpointError(
            f'{classifier}.weight has shape {tuple(fc_weight.shape)}, '
            'expected a Conv1d (num_classes, C, 1)')
    network = AuthorsNetwork(
        depth=depth, block=block, stage_blocks=tuple(blocks),
        classifier=classifier, num_classes=fc_weight.shape[0],
        head_in_channels=fc_weight.shape[1],
        has_ms='base_model.chnl_reduction.0.weight' in state)
    if network.has_ms:
        reduce = state['base_model.chnl_reduction.0.weight']
        network.ms_reduced_channels, network.ms_in_channels = reduce.shape[:2]
        network.ms_motion_channels = _weight(
            state, 'base_model.flow_refinement.conv1.0.weight',
            'the MS transformation').shape[0]
        network.ms_out_channels = _weight(
            state, 'base_model.flow_refinement.conv4.3.weight',
            'the MS transformation').shape[0]
    return network


def network_mismatches(network: AuthorsNetwork,
                       model: nn.Module) -> List[str]:
    """Every way the authors' network differs from ``model`` (a
    Recognizer2D with an MSResNetTSM backbone and a TSMHead), one line each;
    empty if they match."""
    problems = []
    backbone, head = model.backbone, model.cls_head
    depth = getattr(backbone, 'depth', None)
    if depth != network.depth:
        problems.append(f'depth: checkpoint ResNet-{network.depth}, config '
                        f'model.backbone.depth={depth}')
    for name, value in AUTHORS_SHIFT.items():
        if getattr(backbone, name, None) != value:
            problems.append(f'temporal shift: the authors\' network has '
                            f'{name}={value!r}, config model.backbone.{name}='
                            f'{getattr(backbone, name, None)!r}')
    motion_squeezes = [(name, module)
                       for name, module in model.named_modules()
                       if isinstance(module, MotionSqueeze)]
    if not network.has_ms:
        problems.append('MotionSqueeze: the checkpoint has none (no '
                        'chnl_reduction / flow_refinement keys: a TSM, not '
                        'an MSNet checkpoint)')
    elif len(motion_squeezes) != 1:
        problems.append(
            'MotionSqueeze: the authors\' network has one, after layer2; '
            f'the config\'s model has {len(motion_squeezes)}'
            + (f': {[name for name, _ in motion_squeezes]}'
               if motion_squeezes else ''))
    else:
        [(ms_name, ms)] = motion_squeezes
        stage = f'backbone.ms_layer{AUTHORS_MS_STAGE + 1}'
        if ms_name != stage:
            problems.append(f'MotionSqueeze position: the authors\' is '
                            f'{stage} (after layer2), config has {ms_name}')
        checks = [
            ('input channels', network.ms_in_channels, ms.in_channels),
            ('reduced channels', network.ms_reduced_channels,
             ms.reduce[0].out_channels),
            ('motion channels (u, v, confidence)',
             network.ms_motion_channels, ms.motion_channels),
            ('output channels', network.ms_out_channels, ms.out_channels),
        ]
        problems += [
            f'MotionSqueeze {what}: checkpoint {theirs}, config {ours}'
            for what, theirs, ours in checks if theirs != ours
        ]
        problems += [
            f'MotionSqueeze {name}: the authors\' network has {value!r}, '
            f'config {getattr(ms, name)!r}'
            for name, value in AUTHORS_MS.items()
            if getattr(ms, name) != value
        ]
    num_classes = getattr(head, 'num_classes', None)
    if num_classes != network.num_classes:
        problems.append(f'classes: checkpoint {network.num_classes}, config '
                        f'model.cls_head.num_classes={num_classes}')
    in_channels = getattr(head, 'in_channels', None)
    if in_channels != network.head_in_channels:
        problems.append(
            f'head input channels: checkpoint {network.head_in_channels}, '
            f'config model.cls_head.in_channels={in_channels}')
    return problems


def plugin_key(authors_key: str, classifier: str) -> Optional[str]:
    """This plugin's name of an authors' key, before the temporal-shift
    wrapper (``.net``) is resolved; None for a key with no counterpart."""
    if authors_key.startswith(f'{classifier}.'):
        return 'cls_head.fc_cls.' + authors_key[len(classifier) + 1:]
    if not authors_key.startswith(AUTHORS_BACKBONE_PREFIX):
        return None
    key = authors_key[len(AUTHORS_BACKBONE_PREFIX):]
    rules = [
        (r'conv1\.(weight)$', r'conv1.conv.\1'),
        (r'bn1\.(.+)$', r'conv1.bn.\1'),
        (r'(layer\d+\.\d+)\.conv(\d)\.(weight)$', r'\1.conv\2.conv.\3'),
        (r'(layer\d+\.\d+)\.bn(\d)\.(.+)$', r'\1.conv\2.bn.\3'),
        (r'(layer\d+\.\d+)\.downsample\.0\.(weight)$',
         r'\1.downsample.conv.\2'),
        (r'(layer\d+\.\d+)\.downsample\.1\.(.+)$', r'\1.downsample.bn.\2'),
        (r'chnl_reduction\.([01])\.(.+)$', r'ms_layer2.reduce.\1.\2'),
    ]
    for pattern, replacement in rules:
        if re.match(pattern, key):
            return 'backbone.' + re.sub(pattern, replacement, key)
    match = re.match(r'flow_refinement\.conv([1-4])\.([0134])\.(.+)$', key)
    if match:
        stage, index, name = match.groups()
        # Sequential index -> (depthwise 0 / pointwise 1, conv 0 / BN 1).
        part = {'0': '0.0', '1': '0.1', '3': '1.0', '4': '1.1'}[index]
        return (f'backbone.ms_layer2.transform.{int(stage) - 1}.{part}.'
                f'{name}')
    return None


def _without_shift_wrapper(key: str) -> str:
    """``...conv1.conv.net.weight`` -> ``...conv1.conv.weight``: TSM's
    ``TemporalShift`` keeps the conv it wraps as ``.net``."""
    return key.replace('.net.', '.')


def convert_state_dict(checkpoint, model: nn.Module) -> Conversion:
    """Rename the authors' tensors for ``model``, after checking that the
    two networks match.

    Args:
        checkpoint: the authors' checkpoint as ``torch.load`` returns it, or
            its state dict (see :func:`authors_state_dict`).
        model: the config's recognizer; only its names, shapes and
            settings are read.

    Returns:
        Conversion: a state dict that ``model.load_state_dict(...,
        strict=True)`` accepts.

    Raises:
        ConfigMismatchError: the networks differ; the message lists every
            difference.
    """
    authors_state, prefix = authors_state_dict(checkpoint)
    network = read_network(authors_state)
    problems = network_mismatches(network, model)
    if problems:
        raise ConfigMismatchError(
            f'the checkpoint ({network.describe()}) does not fit the '
            'config\'s model:\n' + '\n'.join(f'  {p}' for p in problems))
    model_state = model.state_dict()
    model_keys = {_without_shift_wrapper(key): key for key in model_state}
    conversion = Conversion(state_dict={}, network=network)
    for authors_key, value in authors_state.items():
        key = plugin_key(authors_key, network.classifier)
        if key is None or authors_key.startswith(UNUSED_BN):
            conversion.unused.append(prefix + authors_key)
            continue
        key = model_keys.get(key, key)
        if key == 'cls_head.fc_cls.weight' and value.dim() == 3:
            value = value[:, :, 0]  # Conv1d (K, C, 1) -> Linear (K, C)
        conversion.state_dict[key] = value
        conversion.source_keys[key] = prefix + authors_key
    for key, value in model_state.items():
        if (key.endswith('num_batches_tracked')
                and key not in conversion.state_dict):
            conversion.state_dict[key] = torch.zeros_like(value)
            conversion.zero_counters.append(key)
    differences = describe_differences(
        compare_checkpoint_keys(model_state, conversion.state_dict))
    if differences:
        raise ConfigMismatchError(
            'after renaming, the checkpoint\'s tensors do not fit the '
            f'config\'s model:\n{differences}')
    conversion.unused.sort()
    return conversion


def build_model_of_config(config) -> nn.Module:
    """The config's recognizer as its constructor leaves it (no pretrained
    weights are loaded: ``init_weights`` is not called)."""
    cfg = config if isinstance(config, Config) else Config.fromfile(config)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    with DefaultScope.overwrite_default_scope(
            cfg.get('default_scope', 'mmaction')):
        return MODELS.build(cfg.model)


def convert_authors_checkpoint(src: str, dst: str, config) -> Conversion:
    """Convert the authors' checkpoint file ``src`` for ``config``'s model
    and write it to ``dst`` as mmengine saves checkpoints (``meta`` and
    ``state_dict``), so that ``load_from=dst`` loads every tensor.

    Args:
        src (str): the authors' ``*.pth.tar``.
        dst (str): output file; written whole or not at all.
        config (str | Config): the MMAction2 config to load it with.

    Raises:
        FileNotFoundError: ``src`` or the config file does not exist.
        AuthorsCheckpointError: ``src`` is not an authors' checkpoint;
            ConfigMismatchError (a subclass) if it does not fit the config.
    """
    if isinstance(config, str) and not osp.isfile(config):
        raise FileNotFoundError(f'config not found: {config}')
    if osp.abspath(src) == osp.abspath(dst):
        raise AuthorsCheckpointError(
            f'DST is SRC ({src}): write the converted checkpoint to another '
            'file')
    # Tensors, ints, floats and strings only: nothing in the file runs; an
    # empty, truncated or foreign file is a CheckpointFileError naming it.
    checkpoint = load_checkpoint_file(src, "the authors' checkpoint")
    try:
        conversion = convert_state_dict(checkpoint,
                                         build_model_of_config(config))
    except AuthorsCheckpointError as error:
        config_name = getattr(config, 'filename', config)
        raise type(error)(f'{src} (for {config_name}): {error}') from None
    meta = dict(converted_from=osp.abspath(src),
                config=getattr(config, 'filename', config),
                authors_network=conversion.network.describe())
    if isinstance(checkpoint, Mapping):
        meta.update({f'authors_{key}': checkpoint[key]
                     for key in AUTHORS_SAVED_ENTRIES if key in checkpoint})
    with replaced_atomically(dst) as tmp_path:
        torch.save(dict(meta=meta, state_dict=conversion.state_dict),
                   tmp_path)
    return conversion
