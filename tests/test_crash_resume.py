"""Crash-safe training: atomic checkpoint writes, SIGKILL then --resume,
Ctrl-C and a full disk during a save.

The demo config, shrunk (3 clips of 32x32, batch 1, so 3 iterations per
epoch, 2 epochs), is trained by tools/train.py in a subprocess in
deterministic mode. The first run trains epochs 1 and 2 without
interruption and is killed with SIGKILL while it writes the checkpoint of
epoch 2; it is resumed and killed again in the middle of epoch 2; it is
resumed again to the end. The losses the resumed runs log for epoch 2 must
equal those of the first, uninterrupted, run. Two more runs are stopped
while they write the checkpoint of epoch 2, by SIGINT (Ctrl-C) and by a disk
that fills: the checkpoint of epoch 1 stays, no partial file is left, and
the last line names the cause and the command that resumes. A second
training started into the work directory of a live one is refused.
"""
import glob
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend, get_file_backend

from msnet_plugin.checkpoints import check_checkpoint_file
from msnet_plugin.cli import EXIT_INTERRUPTED, EXIT_USER_ERROR
from msnet_plugin.fileio import AtomicLocalBackend
from msnet_plugin.random_state import capture_random_state, restore_random_state

from repo_paths import DEMO_CONFIG, REPO

ITERS_PER_EPOCH = 3
# The resumed runs repeat the uninterrupted run's float32 arithmetic
# operation for operation on the same CPU; this only allows for the last
# bits of a float32 loss.
LOSS_TOLERANCE = 1e-6

# Runs tools/train.py with os.fsync held for the temporary file of one
# checkpoint, named in argv[1], until the test signals the process, so that
# the signal lands while that checkpoint is being written. It prints
# SLOW_FSYNC_STARTED when the held fsync begins. Nothing in it is timed: on
# a busy machine the test may take long to see that line, and a fsync that
# went on after a fixed time would let the save finish unsignalled.
# SIGINT gets Python's KeyboardInterrupt handler as in a terminal: a test
# run started in the background (``cmd &`` in a script, nohup, some CI)
# hands its children SIGINT ignored, and Python then installs no handler,
# so Ctrl-C would do nothing.
SLOW_SAVE_LAUNCHER = '''
import os, runpy, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
slow_name, tool = sys.argv[1], sys.argv[2]
real_fsync = os.fsync
def fsync(fd):
    try:
        name = os.path.basename(os.readlink(f'/proc/self/fd/{fd}'))
    except OSError:
        name = ''
    if name.startswith('.' + slow_name + '.'):
        print('slow fsync started', flush=True)
        while True:  # until the test's signal
            time.sleep(1)
    return real_fsync(fd)
os.fsync = fsync
sys.argv = sys.argv[2:]
runpy.run_path(tool, run_name='__main__')
'''

# Runs tools/train.py on a disk that fills while the checkpoint named in
# argv[1] is written: the write of its temporary file (msnet_plugin.fileio)
# stores half of the data, then fails with ENOSPC, as a full disk does.
FULL_DISK_LAUNCHER = '''
import builtins, errno, os, runpy, sys
full_name, tool = sys.argv[1], sys.argv[2]
import msnet_plugin.fileio as fileio

class FullDisk:
    def __init__(self, file):
        self.file = file
    def write(self, data):
        self.file.write(data[:len(data) // 2])
        self.file.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    def __enter__(self):
        return self
    def __exit__(self, *exc):
        self.file.close()

def open_on_a_full_disk(path, mode='r', *args, **kwargs):
    file = builtins.open(path, mode, *args, **kwargs)
    if os.path.basename(str(path)).startswith('.' + full_name + '.'):
        return FullDisk(file)
    return file

fileio.open = open_on_a_full_disk
sys.argv = sys.argv[2:]
runpy.run_path(tool, run_name='__main__')
'''


SLOW_FSYNC_STARTED = 'slow fsync started'


def crash_test_options(data_dir):
    options = {
        'train_dataloader.dataset.data_root': data_dir,
        'train_dataloader.dataset.num_videos': ITERS_PER_EPOCH,
        'train_dataloader.dataset.size': 32,
        'train_dataloader.dataset.speed': 4,
        'train_dataloader.batch_size': 1,
        'train_dataloader.num_workers': 0,
        'train_dataloader.persistent_workers': False,
        'train_cfg.max_epochs': 2,
        'default_hooks.logger.interval': 1,
        'log_processor.window_size': 1,  # log each iteration's own loss
        'randomness.deterministic': True,
    }
    return [f'{key}={value}' for key, value in options.items()]


def train_command(work_dir, data_dir, *extra, launcher=()):
    return [
        sys.executable, *launcher,
        str(REPO / 'tools' / 'train.py'), str(DEMO_CONFIG), '--work-dir',
        str(work_dir), '--seed', '0', '--deterministic', '--no-validate',
        *extra, '--cfg-options', *crash_test_options(data_dir)
    ]


def environment():
    # One torch thread: on clips of 32 px, thread hand-offs cost more than
    # the arithmetic (as conftest's one_thread says), the more so on a busy
    # machine; every run of a test gets the same count.
    return dict(os.environ, PYTHONWARNINGS='ignore', PYTHONUNBUFFERED='1',
                OMP_NUM_THREADS='1')


# Guards against a hang only: one training of this file takes about a minute
# on an idle 2-core machine and over 10 minutes on a heavily loaded one.
HANG_TIMEOUT = 2700


def run_to_end(command, cwd):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True,
                            timeout=HANG_TIMEOUT, env=environment())
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def start_until(command, cwd, should_stop_waiting, timeout=HANG_TIMEOUT):
    """Start ``command`` (its output to a log file in ``cwd``) and wait,
    polling every 10 ms, until ``should_stop_waiting(output)`` is true.
    Returns the running process and the path of its log."""
    log_path = Path(cwd) / f'output-{time.monotonic_ns()}.log'
    with open(log_path, 'w') as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log,
                                   stderr=subprocess.STDOUT, env=environment())
    deadline = time.monotonic() + timeout
    try:
        while not should_stop_waiting(log_path.read_text()):
            assert process.poll() is None, (
                'ended before the signal:\n' + log_path.read_text()[-4000:])
            assert time.monotonic() < deadline, 'timed out'
            time.sleep(0.01)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process, log_path


def run_and_signal(command, cwd, should_signal, signal_number,
                   timeout=HANG_TIMEOUT):
    """Start ``command``; send it ``signal_number`` as soon as
    ``should_signal(output)`` is true and wait for it to end. Returns its
    exit status and the output it printed."""
    process, log_path = start_until(command, cwd, should_signal, timeout)
    try:
        process.send_signal(signal_number)
        process.wait(timeout=HANG_TIMEOUT)
    finally:
        process.kill()
        process.wait()
    return process.returncode, log_path.read_text()


def run_and_kill(command, cwd, should_kill, timeout=HANG_TIMEOUT):
    """Start ``command``; SIGKILL it as soon as ``should_kill(output)`` is
    true (polled every 10 ms). Returns the output it printed."""
    returncode, output = run_and_signal(command, cwd, should_kill,
                                        signal.SIGKILL, timeout)
    assert returncode == -signal.SIGKILL
    return output


def files_of(folder):
    """{path: (size, mtime)} of every file under ``folder``."""
    return {
        str(path): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in Path(folder).rglob('*') if path.is_file()
    }


def logged_losses(work_dir):
    """For each run in ``work_dir``, oldest first, the losses it logged:
    {(epoch, iteration in the epoch): loss}, from mmengine's scalars.json."""
    runs = []
    for run_dir in sorted(glob.glob(f'{work_dir}/[0-9]*_[0-9]*/')):
        losses = {}
        path = Path(run_dir, 'vis_data', 'scalars.json')
        lines = path.read_text().splitlines() if path.exists() else []
        for line in lines:
            record = json.loads(line)
            if 'loss' in record:
                epoch = record['epoch']
                step = record['iter'] - (epoch - 1) * ITERS_PER_EPOCH
                losses[epoch, step] = record['loss']
        runs.append(losses)
    return runs


def test_configs_choose_the_atomic_backend_for_checkpoints_only():
    """Plain paths keep mmengine's LocalBackend; the demo's CheckpointHook
    asks for the atomic one by name."""
    assert type(get_file_backend('/any/plain/path.pth')) is LocalBackend
    backend_args = Config.fromfile(
        DEMO_CONFIG).default_hooks.checkpoint.backend_args
    assert isinstance(
        get_file_backend('/any/plain/path.pth', backend_args=backend_args),
        AtomicLocalBackend)


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / 'epoch_1.pth'
    backend = AtomicLocalBackend()
    backend.put(b'old complete checkpoint', target)

    def crash(*args):
        raise KeyboardInterrupt  # like a signal between write and rename

    monkeypatch.setattr(os, 'replace', crash)
    with pytest.raises(KeyboardInterrupt):
        backend.put(b'new checkpoint', target)
    assert target.read_bytes() == b'old complete checkpoint'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['epoch_1.pth']
    monkeypatch.undo()
    backend.put(b'new checkpoint', target)
    assert target.read_bytes() == b'new checkpoint'
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_sigkill_during_save_and_mid_epoch_then_resume(tmp_path):
    """A run SIGKILLed while it writes epoch_2.pth, then resumed, killed in
    the middle of epoch 2 and resumed to the end: the resumed runs log the
    uninterrupted run's losses. While the first run is writing, a second
    training into its work directory stops with exit status 2, naming the
    first's process and host, and writes nothing; the first --resume goes
    on with a notice naming the dead run."""
    data_dir, work_dir = tmp_path / 'data', tmp_path / 'work'

    # 1. Train without interruption through epoch 2, hold the save of
    #    epoch 2 (os.fsync made slow for it), start a second training into
    #    the same work directory, then SIGKILL the first.
    first, first_log = start_until(
        train_command(work_dir, data_dir,
                      launcher=('-c', SLOW_SAVE_LAUNCHER, 'epoch_2.pth')),
        tmp_path, lambda out: SLOW_FSYNC_STARTED in out)
    try:
        before = files_of(work_dir)
        second = subprocess.run(train_command(work_dir, data_dir),
                                cwd=tmp_path, capture_output=True, text=True,
                                timeout=HANG_TIMEOUT, env=environment())
        assert first.poll() is None  # the first run went on
    finally:
        first.kill()
        first.wait()
    assert second.returncode == EXIT_USER_ERROR, second.stderr[-3000:]
    assert 'Traceback' not in second.stderr
    refusal = second.stderr.splitlines()[-1]
    assert refusal.startswith(
        f'error: work_dir {work_dir} is in use by another training '
        f'(process {first.pid} on host {socket.gethostname()}, started ')
    assert refusal.endswith(
        f'; wait for it to end or stop it (kill {first.pid}) and resume '
        'it with --resume, or train into another directory with '
        '--work-dir DIR')
    assert files_of(work_dir) == before
    saving = first_log.read_text()
    assert 'Saving checkpoint at 1 epochs' in saving
    assert 'Saving checkpoint at 2 epochs' in saving
    assert glob.glob(f'{work_dir}/.epoch_2.pth.*.tmp*')  # the unfinished save
    assert not (work_dir / 'epoch_2.pth').exists()
    assert (work_dir / 'last_checkpoint').read_text().endswith('epoch_1.pth')

    # 2. --resume (from epoch_1.pth, the last complete checkpoint); SIGKILL
    #    in the middle of epoch 2.
    killed = run_and_kill(
        train_command(work_dir, data_dir, '--resume'), tmp_path,
        lambda out: f'Epoch(train) [2][1/{ITERS_PER_EPOCH}]' in out)
    assert (f'notice: the training that last used {work_dir} did not end '
            f'normally (process {first.pid} on host {socket.gethostname()}'
            in killed)
    assert 'resumed epoch: 1, iter: 3' in killed, killed[-3000:]

    # 3. --resume again, from epoch_1.pth, to the end.
    final = run_to_end(train_command(work_dir, data_dir, '--resume'),
                       tmp_path)
    assert 'resumed epoch: 1, iter: 3' in final
    checkpoint = torch.load(work_dir / 'epoch_2.pth', weights_only=True)
    assert checkpoint['meta']['epoch'] == 2

    uninterrupted, killed_run, final_run = logged_losses(work_dir)
    epoch_2 = [(2, i) for i in range(1, ITERS_PER_EPOCH + 1)]
    epoch_1 = [(1, i) for i in range(1, ITERS_PER_EPOCH + 1)]
    assert sorted(uninterrupted) == epoch_1 + epoch_2
    assert sorted(killed_run) in ([], epoch_2[:1])  # killed as it logged
    assert sorted(final_run) == epoch_2
    for step in epoch_2:  # shown by pytest -rP
        print(f'epoch 2 iteration {step[1]}: uninterrupted '
              f'{uninterrupted[step]!r}, killed mid-epoch '
              f'{killed_run.get(step)!r}, resumed {final_run[step]!r}')
    for losses in (killed_run, final_run):
        for key, loss in losses.items():
            assert loss == pytest.approx(uninterrupted[key],
                                         abs=LOSS_TOLERANCE)


def assert_only_epoch_1_is_left(work_dir):
    """The checkpoint of epoch 1 is whole, and nothing of epoch 2's."""
    assert sorted(p.name for p in work_dir.iterdir()
                  if 'pth' in p.name) == ['epoch_1.pth']
    assert check_checkpoint_file(str(work_dir / 'epoch_1.pth'),
                                 resume=True) == 'training'
    checkpoint = torch.load(work_dir / 'epoch_1.pth', weights_only=True)
    assert checkpoint['meta']['epoch'] == 1
    assert (work_dir / 'last_checkpoint').read_text().endswith('epoch_1.pth')


def resume_advice(work_dir):
    return (f'in epoch 2 (after {ITERS_PER_EPOCH * 2} iterations). The last '
            f'complete checkpoint, {work_dir}/epoch_1.pth, is intact; resume '
            f'with: python tools/train.py {DEMO_CONFIG} --work-dir {work_dir} '
            '--resume with your other options')


@pytest.mark.slow
def test_ctrl_c_during_a_save_keeps_the_last_checkpoint_and_says_how_to_resume(
        tmp_path):
    """SIGINT while epoch_2.pth is written (its fsync slowed down): exit
    status 130, epoch_1.pth intact, no partial file; the command the
    message gives resumes from epoch_1.pth."""
    data_dir, work_dir = tmp_path / 'data', tmp_path / 'work'
    returncode, output = run_and_signal(
        train_command(work_dir, data_dir,
                      launcher=('-c', SLOW_SAVE_LAUNCHER, 'epoch_2.pth')),
        tmp_path, lambda out: SLOW_FSYNC_STARTED in out,
        signal.SIGINT)
    assert returncode == EXIT_INTERRUPTED, (
        f'exit status {returncode}, last lines:\n' +
        '\n'.join(output.splitlines()[-12:]))
    assert 'Traceback' not in output
    assert output.splitlines()[-1] == (
        'error: training interrupted (Ctrl-C) ' + resume_advice(work_dir))
    assert_only_epoch_1_is_left(work_dir)

    resumed = run_to_end(train_command(work_dir, data_dir, '--resume'),
                         tmp_path)
    assert 'resumed epoch: 1, iter: 3' in resumed
    assert (work_dir / 'epoch_2.pth').is_file()


@pytest.mark.slow
def test_full_disk_during_a_save_keeps_the_last_checkpoint(tmp_path):
    """ENOSPC while epoch_2.pth is written: exit status 2, the error names
    the file and the cause, epoch_1.pth intact, no partial file."""
    data_dir, work_dir = tmp_path / 'data', tmp_path / 'work'
    result = subprocess.run(
        train_command(work_dir, data_dir,
                      launcher=('-c', FULL_DISK_LAUNCHER, 'epoch_2.pth')),
        cwd=tmp_path, capture_output=True, text=True, timeout=HANG_TIMEOUT,
        env=environment())
    assert result.returncode == EXIT_USER_ERROR, result.stderr[-3000:]
    assert 'Traceback' not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f'error: cannot write {work_dir}/epoch_2.pth: No space left on '
        'device; free some space on that disk (or write elsewhere). Training '
        'stopped ' + resume_advice(work_dir))
    assert_only_epoch_1_is_left(work_dir)


def test_random_state_survives_a_safe_checkpoint_round_trip(tmp_path):
    """What RandomStateHook stores loads with weights_only=True and, once
    restored, gives the same numbers as the generators it was taken from."""
    torch.manual_seed(1), np.random.seed(2), random.seed(3)
    np.random.normal()  # numpy keeps a cached Gaussian: it must survive too
    torch.save(dict(rng_state=capture_random_state()), tmp_path / 'rng.pth')

    def draw():
        return (torch.rand(3).tolist(), np.random.normal(size=3).tolist(),
                [random.random() for _ in range(3)])

    expected = draw()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    restore_random_state(
        torch.load(tmp_path / 'rng.pth', weights_only=True)['rng_state'])
    assert draw() == expected
