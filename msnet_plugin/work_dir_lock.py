"""One training at a time in a work directory.

Two trainings started into the same work directory (a second terminal, a
job submitted twice) would write the same ``epoch_N.pth``, ``best_*.pth``
and ``last_checkpoint``. ``tools/train.py`` takes :func:`lock_work_dir`
before the Runner writes anything: the lock is a POSIX record lock
(``fcntl.lockf``) on ``WORK_DIR/.train.lock``, which holds the process id,
host, start time and command of the run that holds it.

- The kernel releases the lock when that process ends in any way (SIGKILL,
  a crash, power loss), so a run that died never blocks the next one: it
  finds the lock free and the record of the dead run, says so in a notice
  and takes the directory over (``--resume`` goes on from its last
  checkpoint).
- A lock that is held (a live run) stops the new run with a
  :class:`~msnet_plugin.checks.ConfigError` naming that run's process, host
  and command and what to do.
- A run that ends normally empties the record.

Record locks belong to the process, not to the processes it forks (the
DataLoader's workers), and work on network file systems that support
locking (NFSv4). In a distributed run only rank 0 takes the lock
(:func:`msnet_plugin.launch.launcher_rank`); a second job's rank 0 is refused, which ends that
job. Importing this module changes nothing: only ``tools/train.py`` locks.
"""
import datetime
import errno
import fcntl
import json
import os
import os.path as osp
import socket
import sys
from typing import Optional, TextIO

from .errors import ConfigError

LOCK_FILE = '.train.lock'


def _describe(record: dict) -> str:
    """``'process 123 on host h, started ...: python tools/train.py ...'``."""
    started = record.get('started', '?')
    command = record.get('command', '')
    return (f"process {record.get('pid', '?')} on host "
            f"{record.get('host', '?')}, started {started}"
            + (f': {command}' if command else ''))


def _read_record(lock_file: TextIO) -> Optional[dict]:
    lock_file.seek(0)
    text = lock_file.read().strip()
    if not text:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


class WorkDirLock:
    """A held lock on a work directory (see the module docstring); release
    it with :meth:`release` (or let the process end)."""

    def __init__(self, path: str, lock_file: TextIO):
        self.path = path
        self._file = lock_file

    def release(self) -> None:
        """Empty the record and release the lock."""
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()
            self._file.flush()
        finally:
            self._file.close()  # releases the record lock
            self._file = None


def lock_work_dir(work_dir: str, command: Optional[str] = None,
                  notice=None) -> WorkDirLock:
    """Take the lock of ``work_dir`` (created if needed) for this process.

    Args:
        work_dir (str): the work directory.
        command (str, optional): the command line to record (default: this
            process's ``sys.argv``).
        notice (callable, optional): called with one line when the lock
            was left by a run that is no longer running (default: print to
            stderr).

    Returns:
        WorkDirLock: held until :meth:`WorkDirLock.release` or the end of
        the process.

    Raises:
        ConfigError: another live process holds the lock; the message
        names it and what to do.
    """
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_FILE)
    lock_file = open(path, 'a+', encoding='utf-8')
    try:
        fcntl.lockf(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EAGAIN):
            lock_file.close()
            raise
        record = _read_record(lock_file) or {}
        lock_file.close()
        pid = record.get('pid')
        stop = f'stop it (kill {pid}' + (
            f' on {record["host"]}' if record.get('host') and
            record['host'] != socket.gethostname() else '') + ')' \
            if pid else 'stop it'
        raise ConfigError(
            f'work_dir {work_dir} is in use by another training ('
            f'{_describe(record)}); wait for it to end or {stop} and resume '
            'it with --resume, or train into another directory with '
            '--work-dir DIR') from None
    previous = _read_record(lock_file)
    if previous is not None:
        (notice or _print_notice)(
            f'notice: the training that last used {work_dir} did not end '
            f'normally ({_describe(previous)}) and is no longer running; '
            'this run takes the work directory over')
    lock_file.seek(0)
    lock_file.truncate()
    json.dump(dict(pid=os.getpid(), host=socket.gethostname(),
                   started=datetime.datetime.now().strftime(
                       '%Y-%m-%d %H:%M:%S'),
                   command=command if command is not None else ' '.join(
                       ['python'] + sys.argv)), lock_file)
    lock_file.write('\n')
    lock_file.flush()
    return WorkDirLock(path, lock_file)


def _print_notice(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
