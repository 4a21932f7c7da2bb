"""Measurement helpers, tools/benchmark.py and tools/compare_zoo.py."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from toolbox import load_tool

from msnet_plugin import benchmarking as bench


def test_alternating_medians_rotate_and_take_medians(monkeypatch):
    """A fake clock: each call advances it by a known duration."""
    clock = [0.0]
    monkeypatch.setattr(bench.time, 'perf_counter', lambda: clock[0])
    order = []
    durations = dict(a=[9.0, 1.0, 2.0, 3.0], b=[5.0, 7.0, 4.0, 6.0])

    def work(name):
        def call():
            order.append(name)
            clock[0] += durations[name][sum(n == name for n in order) - 1]
        return call

    result = bench.alternating_medians(dict(a=work('a'), b=work('b')),
                                       rounds=3, warmup=1)
    assert order == ['a', 'b', 'b', 'a', 'a', 'b', 'b', 'a']
    assert result['a']['times'] == [1.0, 2.0, 3.0]  # warm-up (9.0) dropped
    assert result['a']['median'] == 2.0
    assert result['b']['median'] == 6.0
    with pytest.raises(ValueError, match='rounds must be >= 1'):
        bench.alternating_medians(dict(a=work('a')), rounds=0)


def test_peak_rss_growth_sees_a_temporary_and_needs_its_environment(
        monkeypatch):
    """In a child started with MEMORY_ENV, a freed 64 MiB temporary shows as
    about 64 MiB of peak growth; without it the helper refuses."""
    # The module alone (torch, no mmaction), so the child starts fast.
    code = ('import importlib.util, torch; '
            'spec = importlib.util.spec_from_file_location('
            f'"b", {bench.__file__!r}); '
            'b = importlib.util.module_from_spec(spec); '
            'spec.loader.exec_module(b); '
            'print(b.peak_rss_growth_mb(lambda: torch.ones(16, 2**20).sum()))')
    env = dict(os.environ, **bench.MEMORY_ENV)
    out = subprocess.run([sys.executable, '-c', code], env=env,
                         capture_output=True, text=True, check=True).stdout
    assert 60 < float(out.split()[-1]) < 72
    monkeypatch.delenv('MALLOC_MMAP_THRESHOLD_', raising=False)
    with pytest.raises(RuntimeError, match='MALLOC_MMAP_THRESHOLD_'):
        bench.peak_rss_growth_mb(lambda: None)


def test_benchmark_tool_small_grid(tmp_path):
    """TSM, MSNet and MS on a tiny grid: every figure present, ratios of
    MSNet over TSM, FLOPs differing by the MS module's."""
    tool = load_tool('benchmark')
    report = tool.main([
        '--batch-sizes', '1', '--frames', '2', '--size', '32', '--rounds',
        '1', '--warmup', '0', '--no-memory', '--no-correlation',
        '--out-dir', str(tmp_path)
    ])
    rows = {row['model']: row for row in report['rows']}
    assert set(rows) == {'tsm', 'msnet', 'ms'}
    for row in rows.values():
        assert row['train_step_s'] > 0 and row['inference_clips_per_s'] > 0
    assert rows['msnet']['params'] - rows['tsm']['params'] == 70905
    assert rows['ms']['params'] == 70905
    # 4x4 maps after layer2 at 32 px, one pair: 64 * 225 * 16.
    assert rows['msnet']['correlation_flops'] == 64 * 225 * 16
    assert rows['ms']['correlation_flops'] == 64 * 225 * 16
    (ratio, ) = report['ratios']
    assert ratio['flops'] == pytest.approx(rows['msnet']['flops'] /
                                           rows['tsm']['flops'])
    assert ratio['train_step'] == pytest.approx(
        rows['msnet']['train_step_s'] / rows['tsm']['train_step_s'])
    saved = json.loads((tmp_path / 'benchmark.json').read_text())
    assert saved['ratios'] == report['ratios']
    table = (tmp_path / 'benchmark.md').read_text()
    assert '| MSNet-R50 | 1 | 2 |' in table and '| ratio | 1 | 2 |' in table


def test_benchmark_memory_child_measures_a_training_step():
    """The MS module's training step on 4 clips x 4 frames of (512, 8, 8)
    features, in a child process: at least its (16, 512, 8, 8) float32
    output (2 MiB) is alive at the peak; the model is tiny, so far below
    100 MiB."""
    tool = load_tool('benchmark')
    args = tool.parse_args(['--threads', '1'])
    peak = tool.measure_memory(
        dict(kind='model', model='ms', batch=4, frames=4, size=64), args,
        tool.torch.device('cpu'))
    assert 2 <= peak < 100
    with pytest.raises(SystemExit):
        tool.parse_args(['--frames', '1'])


def test_compare_zoo_reads_the_metafiles():
    tool = load_tool('compare_zoo')
    entries = tool.zoo_entries(['sthv2'])
    by_name = {entry['name']: entry for entry in entries}
    tsm = by_name['tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb']
    assert (tsm['arch'], tsm['top1'], tsm['top5']) == ('TSM', 62.72, 87.7)
    assert osp.isfile(tsm['config'])
    # The metafile calls TSN's sthv2 entry Kinetics-400; the name decides.
    assert any(entry['arch'] == 'TSN' for entry in entries)
    assert all(entry['dataset'] == 'sthv2' for entry in entries)
    assert all('r50' in entry['name'] for entry in entries)
