"""tools/train.py and tools/test.py run the demo end to end on the CPU.

(That every config builds and what it inherits: test_recipe_configs.py.)
"""
import os
import pickle
import re
import shutil
import subprocess
import sys

import pytest

from repo_paths import DEMO_CONFIG, REPO


def accuracies(log, mode):
    """The acc/top1 values an mmengine log printed for ``mode`` (val, test)."""
    return [
        float(value) for value in re.findall(
            rf'Epoch\({mode}\).*?acc/top1: ([0-9.]+)', log)
    ]


def output(result):
    """What a finished tool printed, stdout and stderr."""
    return result.stdout + result.stderr


@pytest.mark.slow
def test_demo_trains_resumes_and_tests(tmp_path, run_tool,
                                       small_demo_amp_run):
    """The shared one-epoch run (--amp), resumed to epoch 2, then tested."""
    first = small_demo_amp_run.log
    assert len(accuracies(first, 'val')) == 1
    assert (small_demo_amp_run.work_dir / 'epoch_1.pth').is_file()

    work_dir = tmp_path / 'work'
    shutil.copytree(small_demo_amp_run.work_dir, work_dir)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_1.pth'))
    options = small_demo_amp_run.options
    resumed = output(run_tool('train.py', DEMO_CONFIG, '--amp', '--work-dir',
                              work_dir, '--resume', '--cfg-options',
                              *options, 'train_cfg.max_epochs=2',
                              cwd=small_demo_amp_run.root, one_thread=True))
    assert 'resumed' in resumed.lower()
    assert f'{work_dir}/epoch_1.pth' in resumed
    assert 'Epoch(train) [1]' not in resumed
    assert re.search(r'Epoch\(train\) \[2\]', resumed)
    assert (work_dir / 'epoch_2.pth').is_file()

    dump = tmp_path / 'predictions.pkl'
    tested = output(run_tool('test.py', DEMO_CONFIG, work_dir / 'epoch_2.pth',
                             '--work-dir', work_dir, '--dump', dump,
                             '--cfg-options', *options,
                             cwd=small_demo_amp_run.root, one_thread=True))
    assert len(accuracies(tested, 'test')) == 1
    with open(dump, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 8
    assert all(p['pred_score'].shape == (4, ) for p in predictions)


@pytest.mark.slow
def test_demo_as_in_readme_learns_motion(tmp_path, run_tool):
    """The README's demo command, unchanged: top-1 well above chance (0.25)."""
    log = output(run_tool('train.py', DEMO_CONFIG, '--work-dir',
                          tmp_path / 'work', cwd=tmp_path))
    top1 = accuracies(log, 'val')
    assert len(top1) == 4
    assert top1[-1] >= 0.75, top1
    tested = output(run_tool('test.py', DEMO_CONFIG,
                             tmp_path / 'work' / 'epoch_4.pth', cwd=tmp_path))
    assert accuracies(tested, 'test')[0] >= 0.75


@pytest.mark.slow
def test_test_tool_names_a_missing_checkpoint_in_one_line(tmp_path):
    """In a fresh interpreter, as a user runs it: one line on stderr, no
    traceback, exit status 2 (msnet_plugin/cli.py)."""
    result = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'test.py'), str(DEMO_CONFIG),
         str(tmp_path / 'missing.pth')], capture_output=True, text=True,
        cwd=tmp_path, env=dict(os.environ, PYTHONWARNINGS='ignore'))
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f'error: checkpoint not found: {tmp_path}/missing.pth')
