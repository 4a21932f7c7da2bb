"""The reduced motion benchmark: MSNet learns motion that TSN cannot see.

tools/motion_benchmark.py trains TSN and MSNet alike (same recipe, seed,
iterations and data) on clips whose label is only in the motion. Measured
with these settings (seed 0, 32 validation clips, chance 0.25): MSNet 0.91
top-1 after 60 iterations, TSN 0.34 (11 of 32 right: within the spread of
chance, 0.08 std). The thresholds (MSNet >= 0.7, TSN <= 0.45) leave a margin
on both sides.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOL = REPO / 'tools' / 'motion_benchmark.py'
REDUCED = ['--num-segments', '4', '--size', '32', '--speed', '8',
           '--iters', '60', '--val-interval', '60', '--train-videos', '64',
           '--val-videos', '32', '--seed', '0']


def load_tool():
    spec = importlib.util.spec_from_file_location('motion_benchmark', TOOL)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.mark.slow
def test_reduced_benchmark_msnet_learns_motion_tsn_does_not(tmp_path):
    out_dir, data_root = tmp_path / 'bench', tmp_path / 'data'
    result = subprocess.run(
        [sys.executable, str(TOOL), '--models', 'tsn', 'msnet', '--out-dir',
         str(out_dir), '--data-root', str(data_root), *REDUCED],
        cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads((out_dir / 'results.json').read_text())
    results = {r['model']: r for r in report['results']}
    chance = 1 / 4
    assert results['msnet']['top1'] >= 0.7, results['msnet']
    assert results['tsn']['top1'] <= chance + 0.2, results['tsn']
    for model in results.values():
        assert model['val_top1_curve'][-1] == [60, model['top1']]
        assert model['seconds_per_iter'] > 0 and model['flops'] > 0
    # MS adds parameters (reduction + transformation) and a little compute.
    assert results['msnet']['params'] > results['tsn']['params']
    assert results['msnet']['flops'] > results['tsn']['flops']
    assert '| MSNet (TSM + MS after layer2) | ' in (
        out_dir / 'results.md').read_text()
    assert (out_dir / 'top1_vs_iteration.png').stat().st_size > 10000

    tool = load_tool()
    common = ['--data-root', str(data_root), *REDUCED]
    # Same settings: nothing is trained again, nothing is lost.
    tool.train_model = None  # would raise if called
    tool.main(['--models', 'tsn', '--out-dir', str(out_dir), *common])
    kept = json.loads((out_dir / 'results.json').read_text())['results']
    assert [r['model'] for r in kept] == ['tsn', 'msnet']
    # --collect merges out-dirs with the same settings, refuses others.
    merged = tmp_path / 'merged'
    tool.main(['--collect', str(out_dir), '--out-dir', str(merged),
               *common])
    assert json.loads((merged / 'results.json').read_text()) == json.loads(
        (out_dir / 'results.json').read_text())
    with pytest.raises(SystemExit, match='was run with settings'):
        tool.main(['--collect', str(out_dir), '--out-dir', str(merged),
                   *common[:-2], '--seed', '1'])


@pytest.mark.parametrize('args,message', [
    (['--iters', '50', '--val-interval', '20'], 'multiple of --val-interval'),
    (['--iters', '0'], '--iters must be >= 1'),
])
def test_bad_benchmark_arguments_are_named(args, message):
    with pytest.raises(SystemExit, match=message):
        load_tool().parse_args(args)
