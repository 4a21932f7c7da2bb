"""How the plugin's tools end on an error the user caused.

Every tool that reads what the user names (a config, a checkpoint, videos,
a data folder, a device) wraps its ``main(argv)`` in :func:`tool_main`;
``motion_benchmark.py`` and ``compare_zoo.py``, which take none of these,
are not wrapped (their argument errors are argparse's, exit status 2 too).
For the wrapped tools:

- An error the user caused (:data:`USER_ERRORS`: a named input that does not
  exist, a bad annotation list, sample, config value or checkpoint file,
  segment counts that disagree, a NaN loss, a full disk or a folder that
  cannot be written, a type the config names that is not registered, a
  syntax error in the config, a value a constructor refuses while the config
  is built, named by its config key: msnet_plugin/config_errors.py) prints
  one line to stderr, ``error: <what is wrong, which file and line, what to
  do>``, and exits with status :data:`EXIT_USER_ERROR` (2), without a
  traceback. (``CheckpointMismatchError`` alone goes on with its indented
  list of the tensors that differ.)
- ``--debug`` (every wrapped tool has it) shows the traceback instead.
- Any other error is a bug and keeps its traceback.
- Ctrl-C exits with status :data:`EXIT_INTERRUPTED` (130) and one line;
  ``tools/train.py`` raises :class:`ToolStopped` with the checkpoint to
  resume from.

Only the tools are wrapped: the plugin's Python API raises its exceptions
with their own types.
"""
import difflib
import errno
import functools
import importlib
import re
import sys
from typing import Callable, List, Optional

from mmengine.registry import Registry

from .checks import config_line
from .config_errors import config_value_message
from .errors import (AnnotationError, BadSampleError, CheckpointFileError,
                     CheckpointMismatchError, ConfigError, InvalidLossError,
                     SegmentCountError)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

#: Exceptions that report the user's mistake in their message.
USER_ERRORS = (FileNotFoundError, AnnotationError, BadSampleError,
               SegmentCountError, CheckpointMismatchError, InvalidLossError,
               CheckpointFileError, ConfigError)

#: ``OSError`` numbers that come from the user's disk or folders, with what
#: to do about them.
OS_ERROR_FIXES = {
    errno.ENOSPC: 'free some space on that disk (or write elsewhere)',
    errno.EDQUOT: 'free some space within your quota (or write elsewhere)',
    errno.EROFS: 'write to a folder on a writable disk',
    errno.EACCES: 'check its permissions, or use another path',
    errno.EPERM: 'check its permissions, or use another path',
    errno.ENOTDIR: 'a part of that path is a file, not a folder; fix the '
    'path',
    errno.EISDIR: 'that path is a folder; name a file',
}
#: Of those, the ones only a write raises.
WRITE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

_REGISTRY_MISS = re.compile(r'(\S+) is not in the (\S+)::(\S+) registry')


class ToolStopped(Exception):
    """A tool stopped on purpose (e.g. training interrupted); the message
    says what to do next and ``exit_code`` is the exit status."""

    def __init__(self, message: str, exit_code: int = EXIT_USER_ERROR):
        super().__init__(message)
        self.exit_code = exit_code


def add_debug_argument(parser) -> None:
    """Give an ``argparse`` parser the ``--debug`` flag :func:`tool_main`
    reads."""
    parser.add_argument(
        '--debug', action='store_true',
        help='on an error, show the Python traceback instead of one line')


def _original_message(error: BaseException) -> str:
    """The message of ``error``, without what torch's DataLoader adds when
    it re-raises an error of a worker process (``Caught X in DataLoader
    worker process 0. Original Traceback ...``)."""
    message = str(error.args[0]) if isinstance(error, KeyError) and \
        error.args else str(error)
    if message.startswith('Caught ') and 'Original Traceback' in message:
        name = type(error).__name__
        match = None
        for match in re.finditer(rf'^(?:[\w.]+\.)?{name}: ', message, re.M):
            pass
        if match is not None:
            message = message[match.end():]
    return message.strip()


def registry_message(error: KeyError,
                     config: Optional[str] = None) -> Optional[str]:
    """A clear message for mmengine's ``KeyError`` about a type the config
    names that no registry holds (with the closest registered names and the
    config line), or None if ``error`` is another ``KeyError``."""
    match = _REGISTRY_MISS.search(_original_message(error))
    if match is None:
        return None
    type_name, scope, registry_name = match.groups()
    where = ''
    if config:
        line = config_line(config, type_name)
        where = (f' ({line})' if line else
                 f' (named in {config}, a base config or --cfg-options)')
    candidates = _registered_names(scope, registry_name)
    close = difflib.get_close_matches(type_name, candidates, n=3,
                                      cutoff=0.6)
    listed = (', '.join(close[:-1]) + ' or ' if len(close) > 1 else ''
              ) + (close[-1] if close else '')
    hint = (f'did you mean {listed}?' if close else
            'check the spelling, and that custom_imports imports the '
            'module that registers it')
    return (f"type '{type_name}' is not registered in {scope}'s "
            f'{registry_name} registry{where}; {hint}')


def _registered_names(scope: str, registry_name: str) -> List[str]:
    """Names registered in the ``registry_name`` registry of ``scope`` and of
    its parents (mmengine's root registries)."""
    names = set()
    for module_name in (f'{scope}.registry', 'mmengine.registry'):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for value in vars(module).values():
            registry = value
            while isinstance(registry, Registry):
                if registry.name == registry_name:
                    names.update(registry.module_dict)
                registry = registry.parent
    return sorted(names)


def user_error_message(error: BaseException,
                       config: Optional[str] = None) -> Optional[str]:
    """The one-line message a tool prints for ``error`` if the user caused
    it, else None (a bug: the traceback is kept)."""
    if isinstance(error, ToolStopped):
        return str(error)
    if isinstance(error, KeyError):
        return registry_message(error, config)
    if isinstance(error, SyntaxError):
        # mmengine parses config files with ast.parse: file '<unknown>'.
        if config and error.filename in ('<unknown>', config):
            return (f'config {config} (or a config it inherits) has a syntax '
                    f'error at line {error.lineno}: {error.msg}')
        return None
    if isinstance(error, FileNotFoundError) and error.filename:
        return (f'{error.filename} not found ({error.strerror}); check the '
                'path')
    if isinstance(error, USER_ERRORS):
        return _original_message(error)
    if isinstance(error, OSError) and error.errno in OS_ERROR_FIXES:
        return describe_os_error(error)
    return config_value_message(error, config)


def describe_os_error(error: OSError) -> str:
    """``'cannot write FILE: <cause>; <fix>'`` (``use`` for errors a read
    may raise too) for an ``OSError`` of the user's disk or folders."""
    verb = 'write' if error.errno in WRITE_ERRORS else 'use'
    target = f' {error.filename}' if error.filename else ''
    return (f'cannot {verb}{target}: {error.strerror or error}; '
            f'{OS_ERROR_FIXES.get(error.errno, "check the path")}')


def _config_argument(argv) -> Optional[str]:
    """The first argument not starting with ``-`` (every tool's first
    positional argument is its config), for messages."""
    for argument in argv:
        if not str(argument).startswith('-'):
            return str(argument) if str(argument).endswith('.py') else None
    return None


def tool_main(main: Callable) -> Callable:
    """Wrap a tool's ``main(argv=None)`` as the module docstring says.

    The wrapped function takes the same ``argv`` and returns what ``main``
    returns; the original is ``wrapped.__wrapped__``.
    """

    @functools.wraps(main)
    def wrapped(argv=None):
        arguments = sys.argv[1:] if argv is None else [str(a) for a in argv]
        debug = '--debug' in arguments
        try:
            return main(argv)
        except KeyboardInterrupt:
            if debug:
                raise
            print('error: interrupted (Ctrl-C)', file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as error:  # noqa: B902 (sorted out below)
            if debug:
                raise
            message = user_error_message(error, _config_argument(arguments))
            if message is None:
                raise
            print(f'error: {message}', file=sys.stderr)
            sys.exit(getattr(error, 'exit_code', EXIT_USER_ERROR))

    return wrapped
