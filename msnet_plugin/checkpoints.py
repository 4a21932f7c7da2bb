"""Checkpoint files: reading one safely, telling its layout, comparing it
with a model, loading it strictly.

- Reading: :func:`load_checkpoint_file` reads a file as every loader of the
  plugin does (``torch.load(weights_only=True)``) and names what is wrong
  with one that is missing, empty, truncated, not a checkpoint or unsafe
  (:class:`~msnet_plugin.errors.CheckpointFileError`).
- Layout: :func:`checkpoint_layout` tells mmengine's training checkpoints,
  bare weights and the MotionSqueeze authors' layout apart;
  :func:`check_checkpoint_file` reads a file and refuses a layout the run
  cannot use. The tools call it on their checkpoint argument before
  anything is built.
- Comparing: :func:`compare_checkpoint_keys` lists which tensors a
  checkpoint fills, which are new, unused or of another shape;
  :func:`describe_differences` and :func:`mismatch_error` word the
  differences (``CheckpointMatchHook`` logs and refuses with them).
- Loading: :func:`load_matching_checkpoint` loads a checkpoint into a model
  only if every tensor fits (the demo, visualisation and export);
  :func:`require_checkpoint_match` makes a config's runs refuse one that
  does not (``tools/test.py``, ``tools/train.py --resume``).
"""
import os.path as osp
import pickle
import re
import sys
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from mmengine.runner.checkpoint import _load_checkpoint_to_model

from .errors import CheckpointFileError, CheckpointMismatchError

#: The first bytes of what ``torch.save`` writes: a zip archive (PyTorch
#: >= 1.6), or the legacy format (a pickled magic number, protocol 2).
ZIP_HEADER = b'PK\x03\x04'
LEGACY_TORCH_HEADER = b'\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19'
#: The prefix ``DataParallel`` gives every key of the model it wraps.
DATA_PARALLEL_PREFIX = 'module.'
#: How the MotionSqueeze authors' training scripts (arunos728/MotionSqueeze,
#: ``main_something.py``, ``main_kinetics.py``) save: ``{'epoch', 'arch',
#: 'state_dict', 'best_prec1'}`` (:data:`AUTHORS_SAVED_ENTRIES`), the
#: ``state_dict`` of a DataParallel-wrapped TSN whose backbone and
#: MotionSqueeze are under ``base_model.`` (:data:`AUTHORS_BACKBONE_PREFIX`).
#: The keys and entries that tell their layout apart:
#: :data:`AUTHORS_KEY_PREFIX` and :data:`AUTHORS_ENTRIES`.
AUTHORS_SAVED_ENTRIES = ('epoch', 'arch', 'best_prec1')
AUTHORS_ENTRIES = ('arch', 'best_prec1')
AUTHORS_BACKBONE_PREFIX = 'base_model.'
AUTHORS_KEY_PREFIX = DATA_PARALLEL_PREFIX + AUTHORS_BACKBONE_PREFIX
CONVERTER = 'tools/convert_authors_checkpoint.py'
# The key renaming Runner.load_checkpoint applies by default.
DEFAULT_REVISE_KEYS = ((rf'^{re.escape(DATA_PARALLEL_PREFIX)}', ''), )
# Keys listed per kind of difference in an error, before "... and N more".
MAX_LISTED_KEYS = 10


def load_checkpoint_file(path: str, key: str = 'checkpoint') -> Any:
    """What ``torch.load(path, weights_only=True)`` returns (tensors mapped
    to the CPU, memory-mapped where the format allows, so that a large file
    costs little to check).

    Raises:
        FileNotFoundError: there is no such file.
        CheckpointFileError: a folder, an empty file, a file ``torch.save``
            did not write, a truncated or damaged one, or one whose pickle
            would run code that safe loading refuses. The message names the
            file (as ``key``, e.g. ``'load_from checkpoint'``), what is wrong
            and what to do.
    """
    path = str(path)
    if not osp.exists(path):
        raise FileNotFoundError(f'{key} not found: {path}')
    if osp.isdir(path):
        raise CheckpointFileError(
            f'{key} {path} is a folder, not a checkpoint file; pass '
            'the .pth file inside it')
    size = osp.getsize(path)
    if size == 0:
        raise CheckpointFileError(
            f'{key} {path} is empty (0 bytes): it was not written or '
            'copied completely; copy it again, or use an earlier checkpoint')
    with open(path, 'rb') as checkpoint_file:
        head = checkpoint_file.read(len(LEGACY_TORCH_HEADER))
    zip_format = head.startswith(ZIP_HEADER)
    if not zip_format and not head.startswith(LEGACY_TORCH_HEADER):
        raise CheckpointFileError(
            f'{key} {path} is not a PyTorch file: it starts with '
            f'{head[:8]!r}, not with the zip or pickle header torch.save '
            'writes; pass the .pth file saved by tools/train.py or '
            'torch.save')
    try:
        return torch.load(path, map_location='cpu', weights_only=True,
                          mmap=zip_format)
    except pickle.UnpicklingError as error:
        cut = _cut_name(str(error))
        if 'Weights only load failed' not in str(error) or cut:
            raise _damaged(key, path, size, error, cut) from error
        detail = re.search(r'WeightsUnpickler error: ([^\n]*)', str(error))
        raise CheckpointFileError(
            f'{key} {path} holds Python objects that safe loading '
            'refuses to create ('
            + (detail.group(1).strip() if detail else 'not tensors') +
            '): loading it would run code from the file. Use checkpoints '
            'saved by tools/train.py or a torch.save of tensors; if you '
            'trust this one, re-save its state_dict as plain tensors') \
            from error
    except (RuntimeError, EOFError, ValueError, KeyError, OSError) as error:
        raise _damaged(key, path, size, error) from error


def _cut_name(message: str) -> Optional[str]:
    """The global a weights-only load refused if it names nothing in a
    module already imported, e.g. ``torch._utils._rebuild_tensor_``: a
    legacy-format file cut inside the name ``_rebuild_tensor_v2``; else
    None. (Nothing is imported to find out.)"""
    match = re.search(r'Unsupported global: GLOBAL ([\w.]+)', message)
    if match is None:
        return None
    module_name, _, name = match.group(1).rpartition('.')
    module = sys.modules.get(module_name)
    if module is not None and not hasattr(module, name):
        return match.group(1)
    return None


def _damaged(key: str, path: str, size: int, error: BaseException,
             cut_name: Optional[str] = None) -> CheckpointFileError:
    # torch's first sentence, e.g. "PytorchStreamReader failed reading zip
    # archive: failed finding central directory".
    first_line = (str(error).strip().splitlines() or [''])[0]
    first_line = first_line.split('. ')[0][:160]
    detail = (f'the pickle ends inside the name {cut_name}' if cut_name else
              type(error).__name__ +
              (f': {first_line}' if first_line else ''))
    return CheckpointFileError(
        f'{key} {path} is truncated or damaged ({size} bytes; torch.load:'
        f' {detail}):'
        ' it was not written or copied completely; copy it again, or use an '
        'earlier checkpoint')


def state_dict_of(checkpoint: Any) -> Optional[Mapping[str, Any]]:
    """The weights of a loaded checkpoint: its ``state_dict`` entry (as
    mmengine and the authors save), or the checkpoint itself if it is a
    non-empty mapping of names to tensors (a bare state dict); None if it
    is neither."""
    if not isinstance(checkpoint, Mapping):
        return None
    state = checkpoint.get('state_dict')
    if isinstance(state, Mapping):
        return state
    if checkpoint and all(
            isinstance(value, torch.Tensor) for value in checkpoint.values()):
        return checkpoint
    return None


def checkpoint_layout(checkpoint: Any) -> Optional[str]:
    """How a loaded checkpoint is laid out.

    Returns:
        ``'training'``: mmengine's Runner's (``state_dict`` and ``meta``,
        usually ``optimizer`` too): loads and resumes. ``'weights'``: a
        ``state_dict`` entry without ``meta``, or a bare state dict (a
        mapping of names to tensors): loads, cannot resume. ``'authors'``:
        the MotionSqueeze authors' training script's (keys starting with
        ``module.base_model.``, or an ``arch`` / ``best_prec1`` entry):
        convert it with tools/convert_authors_checkpoint.py. None: none of
        these (no tensors).
    """
    state = state_dict_of(checkpoint)
    if state is None:
        return None
    if any(entry in checkpoint for entry in AUTHORS_ENTRIES) or any(
            str(key).startswith(AUTHORS_KEY_PREFIX) for key in state):
        return 'authors'
    if state is not checkpoint and 'meta' in checkpoint:
        return 'training'
    return 'weights'


def _no_weights(key: str, path: str, checkpoint: Any) -> CheckpointFileError:
    """The error for a file that loads but holds no state dict."""
    if not isinstance(checkpoint, Mapping):
        holds = f'a {type(checkpoint).__name__}'
    else:
        keys = [str(entry) for entry in checkpoint][:5]
        more = ', ...' if len(checkpoint) > 5 else ''
        holds = (f'a dict of {", ".join(keys) + more}'
                 if keys else 'an empty dict')
    return CheckpointFileError(
        f'{key} {path} is not a model checkpoint: it holds {holds}, with no '
        'state_dict of tensors; pass the .pth file saved by tools/train.py')


def check_checkpoint_file(path: str, resume: bool = False,
                          config: Optional[str] = None,
                          key: str = 'checkpoint') -> str:
    """Check a checkpoint file before a run loads it; return its layout.

    Bare weights (a state dict, or a ``state_dict`` without ``meta``) are
    accepted for testing, export, ``load_from`` and ``pretrained``, as
    mmengine's loaders accept them; resuming needs mmengine's training
    checkpoint (its ``meta`` holds the epoch and iteration).

    Args:
        path (str): the file.
        resume (bool): the run resumes training from it.
        config (str, optional): the config of the run, for the converter
            command in the message about the authors' layout.
        key (str): what the file is to the run (``checkpoint``,
            ``load_from``, ``model.backbone.pretrained``), for messages.

    Returns:
        str: ``'training'`` or ``'weights'``, see :func:`checkpoint_layout`.

    Raises:
        FileNotFoundError, CheckpointFileError: see
        :func:`load_checkpoint_file`; also for a file of another layout
        (the authors' one names the converter command) and, with
        ``resume``, for bare weights.
    """
    checkpoint = load_checkpoint_file(path, key)
    layout = checkpoint_layout(checkpoint)
    if layout is None:
        raise _no_weights(key, path, checkpoint)
    if layout == 'authors':
        stem = osp.splitext(osp.basename(path))[0].replace('.pth', '')
        target = osp.join(osp.dirname(path), f'{stem}_mmaction.pth')
        raise CheckpointFileError(
            f'{key} {path} is in the MotionSqueeze authors\' layout (keys '
            f'{AUTHORS_KEY_PREFIX}*, entries {" and ".join(AUTHORS_ENTRIES)}'
            '), which '
            'the plugin\'s models do not read; convert it first: python '
            f'{CONVERTER} {path} {target} --config {config or "CONFIG"}, '
            f'then pass {target}')
    if resume and layout != 'training':
        raise CheckpointFileError(
            f'{key} {path} holds weights only (no meta with the epoch and '
            'iteration, no optimizer state), so training cannot resume from'
            ' it; to start a new training from these weights, pass it as '
            f'--cfg-options load_from={path} without --resume')
    return layout


def tensor_shape(value) -> Tuple[int, ...]:
    """Shape of a state-dict value; () for a non-tensor entry."""
    return tuple(getattr(value, 'shape', ()))


def revise_checkpoint_keys(
    checkpoint_state: Mapping[str, torch.Tensor],
    revise_keys: Sequence[Tuple[str, str]] = DEFAULT_REVISE_KEYS
) -> Dict[str, torch.Tensor]:
    """Checkpoint keys renamed by each ``(pattern, replacement)`` in turn,
    as ``Runner.load_checkpoint`` renames them."""
    revised = {}
    for key, value in checkpoint_state.items():
        for pattern, replacement in revise_keys:
            key = re.sub(pattern, replacement, key)
        revised[key] = value
    return revised


def compare_checkpoint_keys(
    model_state: Mapping[str, torch.Tensor],
    checkpoint_state: Mapping[str, torch.Tensor],
    revise_keys: Sequence[Tuple[str, str]] = DEFAULT_REVISE_KEYS
) -> dict:
    """Compare a model's ``state_dict()`` with a checkpoint's state dict.

    Args:
        model_state: the model's tensors by name.
        checkpoint_state: the checkpoint's tensors by name (keys are renamed
            by ``revise_keys`` first, as mmengine does when loading).
        revise_keys: ``(pattern, replacement)`` pairs applied to checkpoint
            keys with ``re.sub``.

    Returns:
        dict: sorted key lists ``loaded`` (same name and shape), ``new``
        (only in the model: they keep their initialisation) and ``unused``
        (only in the checkpoint), and ``shape_mismatch``, a dict sorted by
        key, ``key -> (checkpoint shape, model shape)``, of the keys in both
        with different shapes (not loaded: they keep their initialisation).
    """
    revised = revise_checkpoint_keys(checkpoint_state, revise_keys)
    common = model_state.keys() & revised.keys()
    mismatch = {
        key
        for key in common
        if tensor_shape(model_state[key]) != tensor_shape(revised[key])
    }
    return dict(
        loaded=sorted(common - mismatch),
        new=sorted(model_state.keys() - revised.keys()),
        unused=sorted(revised.keys() - model_state.keys()),
        shape_mismatch={
            key: (tensor_shape(revised[key]), tensor_shape(model_state[key]))
            for key in sorted(mismatch)
        })


def format_checkpoint_keys(report: dict) -> str:
    """The report of :func:`compare_checkpoint_keys` as log lines."""
    total = len(report['loaded']) + len(report['new']) + len(
        report['shape_mismatch'])

    def listed(keys):
        return f'{len(keys)}: ' + ', '.join(keys) if keys else 'none'

    return '\n'.join([
        f'checkpoint keys: {len(report["loaded"])} of the model\'s {total} '
        'tensors loaded',
        'new keys (not in the checkpoint; they keep their initialisation) '
        f'{listed(report["new"])}',
        'unused keys (in the checkpoint, not in the model) '
        f'{listed(report["unused"])}',
        'shape-mismatched keys (not loaded; they keep their initialisation) '
        f'{listed(report["shape_mismatch"])}',
    ])


def describe_differences(report: dict,
                         ignore_prefixes: Sequence[str] = ()) -> str:
    """The differences of a :func:`compare_checkpoint_keys` report as
    indented lines, at most ``MAX_LISTED_KEYS`` keys per kind, leaving out
    keys that start with one of ``ignore_prefixes``; empty if none remain."""
    titles = dict(shape_mismatch='different shapes',
                  new='missing from the checkpoint',
                  unused='in the checkpoint, not in the model')
    lines = []
    for kind, title in titles.items():
        keys = [
            key for key in report[kind]
            if not key.startswith(tuple(ignore_prefixes))
        ]
        if kind == 'shape_mismatch':
            keys = [
                f'{key}: checkpoint {report[kind][key][0]} vs model '
                f'{report[kind][key][1]}' for key in keys
            ]
        if not keys:
            continue
        lines.append(f'  {len(keys)} {title}:')
        lines.extend(f'    {key}' for key in keys[:MAX_LISTED_KEYS])
        if len(keys) > MAX_LISTED_KEYS:
            lines.append(f'    ... and {len(keys) - MAX_LISTED_KEYS} more')
    return '\n'.join(lines)


def mismatch_error(source: Optional[str], model: torch.nn.Module,
                   details: str) -> CheckpointMismatchError:
    """The error for checkpoint ``source`` whose ``details`` (from
    :func:`describe_differences`) do not fit ``model``."""
    return CheckpointMismatchError(
        f'checkpoint {source} does not fit the model '
        f'{type(model).__name__}:\n{details}\nIt was probably saved '
        'for another architecture or number of classes. To fine-tune '
        'it with a new head, add '
        "dict(type='CheckpointMatchHook', ignore_prefixes=['cls_head."
        "']) to custom_hooks.")


def require_checkpoint_match(cfg) -> None:
    """Make ``cfg.custom_hooks`` refuse a checkpoint that does not fit the
    model: the config's ``CheckpointMatchHook`` gets ``refuse=True``, or one
    is added, so that testing or resuming such a checkpoint stops with a
    list of the differences (tools/test.py, and tools/train.py with
    ``--resume``)."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    matching = [
        hook for hook in hooks if isinstance(hook, dict) and str(
            hook.get('type', '')).split('.')[-1] == 'CheckpointMatchHook'
    ]
    for hook in matching:
        hook['refuse'] = True
    if not matching:
        hooks.append(dict(type='CheckpointMatchHook'))
    cfg.custom_hooks = hooks


def load_matching_checkpoint(model: torch.nn.Module, filename: str) -> dict:
    """Load ``filename`` (an mmengine checkpoint or a bare state dict) into
    ``model`` if every tensor fits, as the tools that only run a model
    (demo, visualisation, export) need; else raise
    :class:`CheckpointMismatchError` listing the differences, the model
    untouched. The file is read by :func:`load_checkpoint_file` (and its
    errors). Returns the checkpoint."""
    checkpoint = load_checkpoint_file(filename)
    state = state_dict_of(checkpoint)
    if state is None:
        raise _no_weights('checkpoint', filename, checkpoint)
    details = describe_differences(
        compare_checkpoint_keys(model.state_dict(), state))
    if details:
        raise mismatch_error(filename, model, details)
    _load_checkpoint_to_model(model, checkpoint, strict=True)
    return checkpoint
