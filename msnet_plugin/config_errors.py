"""Name the config key behind an error raised while a config is built.

A wrong value in a config (``model.backbone.ms_cfg.patch_size=14``,
``optim_wrapper.optimizer.lr=-0.1``) is refused by the constructor that gets
it, deep inside mmengine's registry: the constructor's message names its own
argument (or only the value), not the key the user writes. Every object of a
config is built by mmengine's ``build_from_cfg``, whose frame holds the
config dict being built (the Runner's ``build_dataloader`` frame holds the
dataloader dict it makes a DataLoader of); :func:`config_value_message`
walks the traceback's frames to those dicts, finds the innermost in the
full config (a ``Config`` that a frame of the tool or of the Runner holds)
and the argument in it that
the message names (or, failing that, whose value it quotes), and writes::

    model.backbone.ms_cfg.patch_size = 14 (line 22 of CONFIG): patch_size
    must be an odd number >= 3 (...), got 14; set another value there or
    with --cfg-options model.backbone.ms_cfg.patch_size=VALUE

Only ``ValueError``, ``AssertionError`` and a ``TypeError`` about an
unexpected keyword argument are looked at, and only when raised while a
config dict was being built; anything else, or an error whose argument
cannot be found in the config, returns None (the tool keeps the traceback).
"""
import difflib
import inspect
import math
import numbers
import os.path as osp
import re
import traceback
from typing import Any, Dict, Iterator, List, Optional, Tuple

from mmengine.config import Config
from torch.utils.data import DataLoader

#: What is allowed, for upstream messages that do not say (torch.optim's
#: argument checks): pattern of the message -> the rule.
ALLOWED = (
    (re.compile(r'^Invalid learning rate'), 'the learning rate must be >= 0'),
    (re.compile(r'^Invalid momentum value'), 'momentum must be >= 0'),
    (re.compile(r'^Invalid weight_decay value'),
     'weight_decay must be >= 0'),
    (re.compile(r'^Invalid epsilon value'), 'eps must be >= 0'),
    (re.compile(r'^Invalid beta parameter'),
     'each of betas must be in [0, 1)'),
    (re.compile(r'^Invalid alpha value'), 'alpha must be >= 0'),
    (re.compile(r'^Invalid lr_decay value'), 'lr_decay must be >= 0'),
)
#: Words by which a message already says what is allowed.
_SAYS_ALLOWED = re.compile(
    r'\b(must|should|expect\w*|one of|choose|needs?|only|allowed|requires?'
    r'|does not match|differs)\b')
_NUMBER = re.compile(r'(?<![\w.])-?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?(?![\w])')
_UNEXPECTED_ARGUMENT = re.compile(
    r"(\w+)\.__init__\(\) got an unexpected keyword argument '(\w+)'")
#: Runner methods whose frames say which part of the config is being built,
#: for a dict that appears in several (a pipeline shared by the datasets).
_SECTION_OF_FRAME = {
    'build_train_loop': 'train_', 'build_val_loop': 'val_',
    'build_test_loop': 'test_', 'build_optim_wrapper': 'optim_wrapper',
    'build_param_scheduler': 'param_scheduler', 'build_model': 'model',
}


def _plain(value: Any) -> Any:
    """``value`` as plain dicts, lists and tuples (not ConfigDicts),
    without the ``_scope_`` keys mmengine adds to inherited configs."""
    if isinstance(value, dict):
        return {
            key: _plain(item)
            for key, item in value.items() if key != '_scope_'
        }
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(item) for item in value)
    return value


def _build_frames(tb) -> Tuple[List[dict], List[Config], List[str], Any]:
    """From a traceback: the config dicts being built (outermost first),
    the Configs the frames hold, the section prefixes the frames' function
    names point to (innermost first), and the class the innermost build
    was constructing."""
    built, configs, sections, built_class = [], [], [], None
    for frame, _ in traceback.walk_tb(tb):
        code = frame.f_code
        local_values = frame.f_locals
        if code.co_name == 'build_from_cfg' and code.co_filename.endswith(
                osp.join('registry', 'build_functions.py')):
            if isinstance(local_values.get('cfg'), dict):
                built.append(local_values['cfg'])
                built_class = local_values.get('obj_cls')
        elif code.co_name == 'build_dataloader' and code.co_filename.endswith(
                osp.join('runner', 'runner.py')) and isinstance(
                    local_values.get('dataloader'), dict):
            # mmengine's Runner makes the DataLoader itself, from the
            # dataloader dict less its dataset and sampler.
            built.append(local_values['dataloader'])
            built_class = DataLoader
        if code.co_name in _SECTION_OF_FRAME:
            sections.insert(0, _SECTION_OF_FRAME[code.co_name])
        for value in list(local_values.values()):
            if isinstance(value, Config) and not any(value is c
                                                     for c in configs):
                configs.append(value)
            elif type(value).__name__ == 'Runner' and isinstance(
                    getattr(value, '__dict__', {}).get('cfg'), Config):
                configs.append(value.__dict__['cfg'])
    return built, configs, sections, built_class


def _dict_nodes(value: Any, path: str) -> Iterator[Tuple[str, dict]]:
    """``(dotted key, dict)`` of every dict in a plain config value."""
    if isinstance(value, dict):
        yield path, value
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return
    for key, item in items:
        yield from _dict_nodes(item, f'{path}.{key}' if path else str(key))


def _match_score(node: dict, target: dict) -> Optional[int]:
    """How well a config dict ``node`` is the one ``target`` was made from:
    the number of its keys with the same value in ``target``, less those
    with another value; None if the types differ or nothing is shared."""
    if 'type' in node and 'type' in target and _type_name(
            node['type']) != _type_name(target['type']):
        return None
    same = sum(1 for key, value in node.items()
               if key in target and value == target[key])
    other = sum(1 for key, value in node.items()
                if key not in target or value != target[key])
    return same - other if same else None


def _type_name(type_value: Any) -> str:
    name = getattr(type_value, '__name__', type_value)
    return str(name).split('.')[-1]


def _locate(root: Any, root_path: str, target: dict,
            sections: List[str]) -> Optional[str]:
    """Dotted key of the dict under ``root`` that ``target`` was made from
    (ties: the one in a section the traceback builds, then the first)."""
    best, best_score = [], None
    for path, node in _dict_nodes(root, root_path):
        score = _match_score(node, target)
        if score is None:
            continue
        if best_score is None or score > best_score:
            best, best_score = [path], score
        elif score == best_score:
            best.append(path)
    for section in sections:
        for path in best:
            if path.startswith(section):
                return path
    return best[0] if best else None


def _get(root: Any, path: str) -> Any:
    node = root
    for key in filter(None, path.split('.')):
        if isinstance(node, dict):  # keys may be ints (a label map)
            node = node[key] if key in node else node[int(key)]
        else:
            node = node[int(key)]
    return node


def _leaves(value: Any, path: str = '') -> Iterator[Tuple[str, Any]]:
    """``(dotted key relative to value, leaf)`` of a plain config value."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)) and any(
            isinstance(item, (dict, list)) for item in value):
        items = enumerate(value)
    else:
        if path:
            yield path, value
        return
    for key, item in items:
        yield from _leaves(item, f'{path}.{key}' if path else str(key))


def _quoted(value: Any, text: str, numbers_in_text: List[float]) -> bool:
    """Whether ``text`` quotes the config value ``value``."""
    if isinstance(value, bool) or value is None:
        return re.search(rf'\b{value}\b', text) is not None
    if isinstance(value, numbers.Real):
        return any(math.isclose(float(value), number, rel_tol=1e-9)
                   for number in numbers_in_text)
    if isinstance(value, str) and value:
        return re.search(rf'(?<![\w.]){re.escape(value)}(?![\w])',
                         text) is not None
    if isinstance(value, (list, tuple)) and value:
        return str(list(value)) in text or str(tuple(value)) in text
    return False


def _argument(node: Any, text: str) -> Optional[str]:
    """The dotted key, relative to ``node``, of the one leaf that ``text``
    names (as a word), or failing that quotes the value of; None if there
    is none or several are equally likely."""
    numbers_in_text = [float(n) for n in _NUMBER.findall(text)]
    scored: Dict[str, int] = {}
    for path, value in _leaves(node):
        name = path.split('.')[-1]
        score = 0
        if not name.isdigit() and name != 'type' and re.search(
                rf'(?<![\w.]){re.escape(name)}\b', text, re.IGNORECASE):
            score += 2
        if _quoted(value, text, numbers_in_text):
            score += 1
        if score:
            scored[path] = score
    if not scored:
        return None
    top = max(scored.values())
    best = [path for path, score in scored.items() if score == top]
    # The same argument at several depths (num_segments of the backbone and
    # of its ms_cfg): the shallowest, if it alone is shallowest.
    best.sort(key=lambda path: path.count('.'))
    if len(best) > 1 and best[0].count('.') == best[1].count('.'):
        return None
    return best[0]


def _error_text(error: BaseException) -> Optional[str]:
    """The text to search for the argument: the message; for an
    ``AssertionError`` also the ``assert`` line that failed; None for an
    error that is not about a value."""
    message = str(error.args[0]) if len(error.args) == 1 else str(error)
    if isinstance(error, AssertionError):
        frames = traceback.extract_tb(error.__traceback__)
        return f'{message} {frames[-1].line or ""}' if frames else message
    if isinstance(error, TypeError):
        return message if _UNEXPECTED_ARGUMENT.search(message) else None
    if isinstance(error, ValueError):
        return message
    return None


def value_line(filename: Optional[str], name: str,
               value: Any) -> Optional[str]:
    """``'line N of FILE'`` of the first line of the config file that sets
    ``name`` to ``value`` (``name=value`` or ``'name': value``); None if no
    line does (set in a base config, by --cfg-options or computed)."""
    if not filename or not osp.isfile(filename):
        return None
    literal = re.escape(repr(value) if isinstance(value, str) else str(
        value)).replace(r'\ ', r'\s*')
    pattern = re.compile(
        rf'''(?:\b{re.escape(name)}\s*=|['"]{re.escape(name)}['"]\s*:)\s*'''
        rf'{literal}(?![\w.])')
    with open(filename, encoding='utf-8', errors='replace') as config_file:
        for number, line in enumerate(config_file, 1):
            if pattern.search(line.split('#')[0]):
                return f'line {number} of {filename}'
    return None


def _allowed(message: str) -> str:
    """What is allowed, when ``message`` does not say it."""
    if _SAYS_ALLOWED.search(message):
        return ''
    for pattern, rule in ALLOWED:
        if pattern.search(message):
            return f' ({rule})'
    return ''


def _suggestion(built_class: Any, name: str) -> str:
    """``'; did you mean X?'`` for a misspelled argument of
    ``built_class`` (its constructor's and its bases' arguments)."""
    names = set()
    for klass in getattr(built_class, '__mro__', ()):
        if '__init__' in vars(klass):
            try:
                names.update(
                    parameter.name for parameter in inspect.signature(
                        klass.__init__).parameters.values()
                    if parameter.kind in (parameter.POSITIONAL_OR_KEYWORD,
                                          parameter.KEYWORD_ONLY))
            except (TypeError, ValueError):
                continue
    names.discard('self')
    close = difflib.get_close_matches(name, sorted(names), n=1, cutoff=0.6)
    return f'; did you mean {close[0]}?' if close else ''


def config_value_message(error: BaseException,
                         config: Optional[str] = None) -> Optional[str]:
    """The one-line message for an error that a config value caused while
    the config was being built (see the module docstring), or None. Never
    raises: should the search itself fail, the error keeps its traceback."""
    try:
        return _config_value_message(error, config)
    except Exception:  # noqa: B902 (the original error matters, not this)
        return None


def _config_value_message(error: BaseException,
                          config: Optional[str]) -> Optional[str]:
    text = _error_text(error)
    if text is None:
        return None
    built, configs, sections, built_class = _build_frames(
        error.__traceback__)
    if not built:
        return None
    # Where each dict being built is in the full config, outermost first:
    # a dict inside the one built around it, else anywhere.
    located: List[Tuple[str, Any]] = []
    for full_config in configs:
        root = _plain(full_config.to_dict())
        located = []
        for target in map(_plain, built):
            path = None
            if located:
                path = _locate(_get(root, located[-1][0]), located[-1][0],
                               target, sections)
            if path is None:
                path = _locate(root, '', target, sections)
            if path is not None and (not located or path != located[-1][0]):
                located.append((path, _get(root, path)))
        if located:
            break
    message = _original(error)
    for path, node in reversed(located):
        argument = _argument(node, text)
        if argument is None:
            continue
        key = f'{path}.{argument}' if path else argument
        value = _get(node, argument)
        name = argument.split('.')[-1]
        line = value_line(config, name, value)
        where = line or (f'set in {config}, a config it inherits or '
                         '--cfg-options' if config else 'in the config')
        unexpected = _UNEXPECTED_ARGUMENT.search(message)
        if unexpected and unexpected.group(2) == name:
            return (f'{key} ({where}): {unexpected.group(1)} takes no '
                    f'argument {name}{_suggestion(built_class, name)}')
        return (f'{key} = {value!r} ({where}): {message}{_allowed(message)}'
                f'; set another value there or with --cfg-options '
                f'{key}=VALUE')
    return None


def _original(error: BaseException) -> str:
    message = str(error).strip()
    if isinstance(error, AssertionError) and not message:
        frames = traceback.extract_tb(error.__traceback__)
        message = (f'{frames[-1].line} is false'
                   if frames and frames[-1].line else 'assertion failed')
    return ' '.join(message.split()).rstrip('.')
