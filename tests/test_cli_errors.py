"""The tools' convention for errors (msnet_plugin/cli.py): an error the user
caused prints one line and exits with status 2, ``--debug`` shows the
traceback, any other error keeps its traceback, Ctrl-C exits with 130."""
import errno
import os

import pytest
from torch.utils.data import DataLoader, Dataset

from msnet_plugin.cli import (EXIT_INTERRUPTED, EXIT_USER_ERROR, tool_main,
                              user_error_message)
from msnet_plugin.errors import BadSampleError, ConfigError

from repo_paths import DEMO_CONFIG

TOOLS = ('train', 'test', 'check_dataset', 'export', 'visualize_motion',
         'demo', 'get_flops', 'convert_authors_checkpoint',
         'generate_synthetic_motion')


@pytest.mark.parametrize('tool', TOOLS)
def test_every_tool_has_the_debug_flag(tool, load_tool, capsys):
    with pytest.raises(SystemExit) as stopped:
        load_tool(tool).main(['--help'])
    assert stopped.value.code == 0
    assert '--debug' in capsys.readouterr().out


def test_debug_shows_the_traceback(tmp_path, load_tool, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arguments = [str(DEMO_CONFIG), 'missing.pth', '--work-dir',
                 str(tmp_path / 'work')]
    with pytest.raises(SystemExit):
        load_tool('test').main(arguments)
    with pytest.raises(FileNotFoundError, match='checkpoint not found: '
                       'missing.pth'):
        load_tool('test').main(arguments + ['--debug'])


def test_an_unexpected_error_keeps_its_traceback(tmp_path, load_tool,
                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    tool = load_tool('train')

    def broken(model_cfg):
        raise ZeroDivisionError('a bug, not the user\'s mistake')

    monkeypatch.setattr(tool, 'check_segment_counts', broken)
    with pytest.raises(ZeroDivisionError):
        tool.main([str(DEMO_CONFIG), '--work-dir', str(tmp_path / 'work')])


def raises(error):
    """A tool main that raises ``error``."""

    @tool_main
    def main(argv=None):
        raise error

    return main


def test_which_errors_are_the_users(capsys):
    with pytest.raises(SystemExit) as stopped:
        raises(ConfigError('work_dir x cannot be written'))([])
    assert stopped.value.code == EXIT_USER_ERROR
    assert capsys.readouterr().err == 'error: work_dir x cannot be written\n'
    for bug in (KeyError('state_dict'), ValueError('bad value'),
                OSError(errno.EIO, 'Input/output error')):
        with pytest.raises(type(bug)):
            raises(bug)([])
    with pytest.raises(SystemExit) as stopped:
        raises(KeyboardInterrupt())([])
    assert stopped.value.code == EXIT_INTERRUPTED
    assert capsys.readouterr().err == 'error: interrupted (Ctrl-C)\n'


def test_disk_and_folder_errors_name_the_file_and_the_fix():
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'w/epoch_2.pth')
    assert user_error_message(full) == (
        'cannot write w/epoch_2.pth: No space left on device; free some '
        'space on that disk (or write elsewhere)')
    denied = PermissionError(errno.EACCES, os.strerror(errno.EACCES), '/w')
    assert user_error_message(denied) == (
        'cannot use /w: Permission denied; check its permissions, or use '
        'another path')


class FailsInAWorker(Dataset):

    def __len__(self):
        return 1

    def __getitem__(self, index):
        raise BadSampleError('cannot load a.mp4 (line 1 of list.txt): '
                             'RuntimeError: Error reading 0 bytes')


def test_a_dataloader_workers_error_is_shown_as_the_worker_raised_it():
    """torch re-raises a worker's error with its traceback in the message;
    the tools print the worker's own message."""
    with pytest.raises(BadSampleError) as error:
        next(iter(DataLoader(FailsInAWorker(), num_workers=1)))
    assert 'Original Traceback' in str(error.value)
    assert user_error_message(error.value) == (
        'cannot load a.mp4 (line 1 of list.txt): RuntimeError: Error reading '
        '0 bytes')


@pytest.mark.slow
def test_a_config_that_does_not_exist_or_does_not_parse(tmp_path,
                                                        tool_error):
    assert tool_error('train', [tmp_path / 'nothere.py']) == (
        EXIT_USER_ERROR, f'error: {tmp_path}/nothere.py not found (No such '
        'file or directory); check the path\n')
    config = tmp_path / 'unclosed.py'
    config.write_text(f'_base_ = [{str(DEMO_CONFIG)!r}]\n'
                      'model = dict(backbone=dict(depth=18)\n')
    assert tool_error('test', [config, 'epoch_1.pth']) == (
        EXIT_USER_ERROR, f'error: config {config} (or a config it inherits) '
        "has a syntax error at line 2: '(' was never closed\n")
