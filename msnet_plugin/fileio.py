"""Files that appear whole or not at all.

:func:`replaced_atomically` is the one home of the plugin's atomic writes: the
content goes to a hidden temporary file in the target's folder, which is
flushed to disk and renamed onto the target, so the target holds the old
content or the complete new one, never part of one; on any error the
temporary file is removed and the target is untouched.

:class:`AtomicLocalBackend` is mmengine's ``LocalBackend`` with such writes,
registered as the file backend ``'atomic_local'``. Importing this module
registers that new name only; mmengine's ``local`` backend, which every plain
path gets, stays as it is. A config opts in for its checkpoints::

    default_hooks = dict(checkpoint=dict(
        backend_args=dict(backend='atomic_local')))

mmengine's CheckpointHook passes ``backend_args`` to ``save_checkpoint``, so
``epoch_N.pth`` and ``best_*.pth`` are then written atomically: a crash, a
SIGKILL or a full disk during a save leaves no truncated checkpoint under the
real name. (The hook's small ``last_checkpoint`` pointer is written by
mmengine with plain ``open``, after the checkpoint it names.)
"""
import contextlib
import os
import os.path as osp
import uuid
from typing import Iterator

from mmengine.fileio import LocalBackend, register_backend

ATOMIC_BACKEND = 'atomic_local'


def _fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be
    opened, e.g. on Windows)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


@contextlib.contextmanager
def replaced_atomically(path: str, durable: bool = True) -> Iterator[str]:
    """Yield a temporary path to write; on success it replaces ``path``.

    The temporary file is a hidden sibling of ``path`` with the same suffix
    (so writers that pick a format by suffix, such as OpenCV's, work). Parent
    folders are created.

    Args:
        path (str): the file to write.
        durable (bool): fsync the file and the folder before and after the
            rename, so that the new content survives a power loss too.

    Raises:
        Whatever the writing raised: the temporary file is removed first and
        ``path`` keeps its old content (or stays absent).
    """
    folder, name = osp.split(osp.abspath(str(path)))
    os.makedirs(folder, exist_ok=True)
    tmp_path = osp.join(folder,
                        f'.{name}.{uuid.uuid4().hex}.tmp{osp.splitext(name)[1]}')
    try:
        yield tmp_path
        if not osp.exists(tmp_path):
            raise OSError(f'nothing was written to {tmp_path} for {path}')
        if durable:
            with open(tmp_path, 'rb') as written:
                os.fsync(written.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        if osp.exists(tmp_path):
            os.remove(tmp_path)
        raise
    if durable:
        _fsync_folder(folder)


def write_bytes_atomically(path: str, data: bytes,
                           durable: bool = True) -> None:
    """Write ``data`` to ``path`` through :func:`replaced_atomically`.

    An ``OSError`` of the temporary file (a full disk: ``ENOSPC`` from the
    write, the flush or the fsync, which name no file) is raised again with
    ``path`` as its ``filename``, so the message names the file the user
    knows."""
    tmp_path = None
    try:
        with replaced_atomically(path, durable) as tmp_path:
            # 'xb' like open(path, 'wb') for permissions (the umask applies).
            with open(tmp_path, 'xb') as tmp_file:
                tmp_file.write(data)
    except OSError as error:
        if error.filename not in (None, tmp_path) or error.errno is None:
            raise
        raise OSError(error.errno, error.strerror or str(error),
                      str(path)) from error


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose ``put`` and ``put_text`` replace
    the file atomically and durably (:func:`write_bytes_atomically`)."""

    def put(self, obj: bytes, filepath) -> None:
        write_bytes_atomically(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)
