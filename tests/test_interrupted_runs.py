"""Mistakes around interrupted and repeated runs: a second training into a
work directory in use (msnet_plugin/work_dir_lock.py: refused, naming the
live process; a lock left by a run that died does not block the next run,
which says so; two real trainings: tests/test_crash_resume.py), and
--resume of a training that already ended."""
import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch

from msnet_plugin.errors import ConfigError
from msnet_plugin.cli import EXIT_USER_ERROR
from msnet_plugin.work_dir_lock import LOCK_FILE, lock_work_dir

from repo_paths import DEMO_CONFIG

# Another process holding the lock as tools/train.py does (a record lock and
# the JSON record), without importing the plugin (fast to start).
HOLDER = '''
import fcntl, json, os, socket, sys, time
lock_file = open(sys.argv[1], 'a+')
fcntl.lockf(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
lock_file.truncate(0)
json.dump(dict(pid=os.getpid(), host=socket.gethostname(),
               started='2026-12-05 18:00:00',
               command='python tools/train.py a.py'), lock_file)
lock_file.flush()
print('locked', flush=True)
time.sleep(120)
'''


@pytest.fixture
def holder(tmp_path):
    """A live process holding the lock of ``tmp_path / 'work'``."""
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    process = subprocess.Popen(
        [sys.executable, '-c', HOLDER, str(work_dir / LOCK_FILE)],
        stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == 'locked\n'
    yield work_dir, process
    process.kill()
    process.wait()


def test_a_work_dir_in_use_is_refused_naming_the_other_process(holder):
    work_dir, process = holder
    before = sorted(os.listdir(work_dir))
    with pytest.raises(ConfigError) as refused:
        lock_work_dir(str(work_dir))
    assert str(refused.value) == (
        f'work_dir {work_dir} is in use by another training (process '
        f'{process.pid} on host {socket.gethostname()}, started 2026-12-05 '
        '18:00:00: python tools/train.py a.py); wait for it to end or stop '
        f'it (kill {process.pid}) and resume it with --resume, or train into '
        'another directory with --work-dir DIR')
    assert sorted(os.listdir(work_dir)) == before
    # The holder's record is untouched.
    record = json.loads((work_dir / LOCK_FILE).read_text())
    assert record['pid'] == process.pid


def test_a_lock_left_by_a_killed_run_does_not_block(holder):
    """SIGKILL releases the lock; its record stays, and the next run says
    whose it was and takes the directory over."""
    work_dir, process = holder
    process.send_signal(signal.SIGKILL)
    process.wait()
    notices = []
    lock = lock_work_dir(str(work_dir), command='python tools/train.py b.py',
                         notice=notices.append)
    assert notices == [
        f'notice: the training that last used {work_dir} did not end '
        f'normally (process {process.pid} on host {socket.gethostname()}, '
        'started 2026-12-05 18:00:00: python tools/train.py a.py) and is no '
        'longer running; this run takes the work directory over']
    record = json.loads((work_dir / LOCK_FILE).read_text())
    assert (record['pid'], record['command']) == (os.getpid(),
                                                  'python tools/train.py b.py')
    lock.release()
    # A run that ends normally leaves an empty record: no notice next time.
    assert (work_dir / LOCK_FILE).read_text() == ''
    lock_work_dir(str(work_dir), notice=notices.append).release()
    assert len(notices) == 1


def test_resume_of_a_training_that_already_ended(tmp_path, tool_error,
                                                 monkeypatch):
    """mmengine would train nothing and end with status 0."""
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    last = work_dir / 'epoch_4.pth'
    torch.save(dict(meta=dict(epoch=4, iter=160),
                    state_dict={'cls_head.fc_cls.bias': torch.zeros(4)}),
               last)
    (work_dir / 'last_checkpoint').write_text(str(last))
    ended = (f'error: training already ended: {last} is the checkpoint of '
             'epoch 4 and train_cfg.max_epochs is 4, so --resume has '
             'nothing to train; to train longer, resume with --cfg-options '
             'train_cfg.max_epochs=N (N > 4), or start a new training with '
             'another --work-dir\n')
    for resume in (['--resume'], ['--resume', last]):
        assert tool_error('train', [DEMO_CONFIG, '--work-dir', work_dir,
                                    *resume]) == (EXIT_USER_ERROR, ended)
    assert sorted(p.name for p in work_dir.iterdir()) == [
        'epoch_4.pth', 'last_checkpoint']  # nothing written
