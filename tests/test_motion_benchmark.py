"""The reduced motion benchmark: MSNet learns motion that TSN cannot see.

tools/motion_benchmark.py trains TSN and MSNet alike (same recipe, seed,
iterations and data) on clips whose label is only in the motion. Measured
with these settings (seed 0, 32 validation clips, chance 0.25): MSNet 0.91
top-1 after 60 iterations, TSN 0.34 (11 of 32 right: within the spread of
chance, 0.08 std). The thresholds (MSNet >= 0.7, TSN <= 0.45) leave a margin
on both sides.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REDUCED = ['--num-segments', '4', '--size', '32', '--speed', '8',
           '--iters', '60', '--val-interval', '60', '--train-videos', '64',
           '--val-videos', '32', '--seed', '0']


def run_benchmark(*args, cwd):
    result = subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'motion_benchmark.py'),
         *map(str, args)], cwd=cwd, capture_output=True, text=True,
        timeout=1800)
    return result.returncode, result.stdout + result.stderr


def test_reduced_benchmark_msnet_learns_motion_tsn_does_not(tmp_path):
    out_dir = tmp_path / 'bench'
    code, log = run_benchmark('--models', 'tsn', 'msnet', '--out-dir',
                              out_dir, '--data-root', tmp_path / 'data',
                              *REDUCED, cwd=tmp_path)
    assert code == 0, log[-4000:]
    with open(out_dir / 'results.json') as results_file:
        report = json.load(results_file)
    results = {r['model']: r for r in report['results']}
    chance = 1 / 4
    assert results['msnet']['top1'] >= 0.7, results['msnet']
    assert results['tsn']['top1'] <= chance + 0.2, results['tsn']
    for result in results.values():
        assert result['val_top1_curve'][-1] == [60, result['top1']]
        assert result['seconds_per_iter'] > 0
        assert result['flops'] > 0
    # MS adds parameters (reduction + transformation) and a little compute.
    assert results['msnet']['params'] > results['tsn']['params']
    assert results['msnet']['flops'] > results['tsn']['flops']
    table = (out_dir / 'results.md').read_text()
    assert '| MSNet (TSM + MS after layer2) | ' in table
    assert (out_dir / 'top1_vs_iteration.png').stat().st_size > 10000

    # A second call with the same settings reuses the results; --collect
    # merges runs; mismatched settings are refused with a clear message.
    code, log = run_benchmark('--models', 'tsn', '--out-dir', out_dir,
                              '--data-root', tmp_path / 'data', *REDUCED,
                              cwd=tmp_path)
    assert code == 0 and 'Runner' not in log and 'Iter(train)' not in log
    code, log = run_benchmark('--collect', out_dir, '--out-dir',
                              tmp_path / 'merged', '--data-root',
                              tmp_path / 'data', *REDUCED, cwd=tmp_path)
    assert code == 0, log[-2000:]
    merged = json.loads((tmp_path / 'merged' / 'results.json').read_text())
    assert [r['model'] for r in merged['results']] == ['tsn', 'msnet']
    code, log = run_benchmark('--collect', out_dir, '--out-dir',
                              tmp_path / 'merged', '--data-root',
                              tmp_path / 'data', *REDUCED[:-2], '--seed', 1,
                              cwd=tmp_path)
    assert code != 0 and 'was run with settings' in log


@pytest.mark.parametrize('args,message', [
    (['--iters', '50', '--val-interval', '20'], 'multiple of --val-interval'),
    (['--iters', '0'], '--iters must be >= 1'),
])
def test_bad_benchmark_arguments_are_named(tmp_path, args, message):
    code, log = run_benchmark(*args, '--out-dir', tmp_path, cwd=tmp_path)
    assert code != 0 and message in log
