"""Device and launcher mistakes: --launcher without the environment its
launcher sets (a run started by hand) names the missing variables and how
to start such a run, not init_dist's KeyError; --device naming a CUDA
device the machine does not have, or no device, is refused before the model
is built; the rank before init_dist, for what only rank 0 does (the work
directory lock)."""

import pytest
import torch

from msnet_plugin.cli import EXIT_USER_ERROR
from msnet_plugin.launch import LAUNCHERS, launcher_rank

from repo_paths import DEMO_CONFIG


@pytest.fixture
def no_launcher_variables(monkeypatch):
    for variables, _ in LAUNCHERS.values():
        for name in variables:
            monkeypatch.setenv(name, '')  # restored after the test
            monkeypatch.delenv(name)


@pytest.mark.parametrize('tool', ['train', 'test'])
def test_launcher_pytorch_started_by_hand(tool, tool_error, tmp_path,
                                          no_launcher_variables, monkeypatch):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / 'weights.pth'
    if tool == 'test':
        import torch
        torch.save({'w': torch.zeros(1)}, weights)
    arguments = [DEMO_CONFIG] + ([weights] if tool == 'test' else []) + [
        '--work-dir', tmp_path / 'work', '--launcher', 'pytorch']
    code, err = tool_error(tool, arguments)
    # The tools set LOCAL_RANK from --local-rank, as MMAction2's do.
    missing = 'RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT are'
    assert (code, err) == (EXIT_USER_ERROR, (
        '--launcher pytorch reads the rank and the number of processes from '
        f'variables its launcher sets, and {missing} not set: start the run '
        'with bash tools/dist_train.sh CONFIG NPROC (or torchrun '
        '--nproc-per-node NPROC tools/train.py CONFIG --launcher pytorch), '
        'or leave out --launcher for one process\n').join(['error: ', '']))


def test_rank_before_init_dist(no_launcher_variables, monkeypatch):
    assert launcher_rank('pytorch') == 0
    monkeypatch.setenv('RANK', '1')
    assert launcher_rank('pytorch') == 1
    assert launcher_rank('none') == 0  # RANK means nothing without launcher
    monkeypatch.setenv('SLURM_PROCID', '3')
    assert launcher_rank('slurm') == 3


@pytest.mark.parametrize('tool', ['visualize_motion', 'demo'])
def test_device_that_this_machine_does_not_have(tool, tool_error, tmp_path):
    video = tmp_path / 'clip.mp4'
    video.write_bytes(b'not read: the device is checked first')
    weights = tmp_path / 'weights.pth'
    torch.save({'w': torch.zeros(1)}, weights)
    arguments = [DEMO_CONFIG, weights, video] + (
        ['--out', tmp_path / 'motion'] if tool == 'visualize_motion' else [])
    assert tool_error(tool, arguments + ['--device', 'gpu0']) == (
        EXIT_USER_ERROR,
        'error: --device gpu0 is not a device name; use cpu or cuda:N\n')
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        assert tool_error(tool, arguments + ['--device', f'cuda:{count}'])[
            1].startswith(f'error: --device cuda:{count}: this machine has')
    else:
        assert tool_error(tool, arguments + ['--device', 'cuda:0']) == (
            EXIT_USER_ERROR, 'error: --device cuda:0: this machine has no '
            f'CUDA device (torch {torch.__version__}); use --device cpu\n')
