"""Measurement helpers (msnet_plugin/benchmarking.py, msnet_plugin/benchmark/),
tools/benchmark.py, tools/gpu_check.sh and tools/compare_zoo.py."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from repo_paths import REPO

from msnet_plugin import benchmarking as bench
from msnet_plugin.benchmark import parts
from msnet_plugin.benchmark.report import markdown, ratios


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


@pytest.mark.slow
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


GRID_ONLY = ['--no-memory', '--no-correlation', '--no-onnx', '--no-compile']


@pytest.mark.slow
def test_benchmark_tool_small_grid(tmp_path, load_tool):
    """TSM, MSNet, both with with_cp, and MS on a tiny grid: every figure
    present, ratios of MSNet over TSM for both pairs, FLOPs differing by the
    MS module's."""
    tool = load_tool('benchmark')
    report = tool.main([
        '--batch-sizes', '1', '--frames', '2', '--size', '32', '--rounds',
        '1', '--warmup', '0', '--out-dir', str(tmp_path), *GRID_ONLY
    ])
    rows = {row['model']: row for row in report['rows']}
    assert set(rows) == {'tsm', 'msnet', 'tsm_cp', 'msnet_cp', 'ms'}
    for row in rows.values():
        assert row['train_step_s'] > 0 and row['inference_clips_per_s'] > 0
    assert rows['msnet']['params'] - rows['tsm']['params'] == 70905
    assert rows['ms']['params'] == 70905
    # 4x4 maps after layer2 at 32 px, one pair: 64 * 225 * 16.
    assert rows['msnet']['correlation_flops'] == 64 * 225 * 16
    assert rows['ms']['correlation_flops'] == 64 * 225 * 16
    assert rows['msnet_cp']['flops'] == rows['msnet']['flops']
    ratios = {ratio['pair']: ratio for ratio in report['ratios']}
    assert set(ratios) == {'msnet/tsm', 'msnet_cp/tsm_cp'}
    ratio = ratios['msnet/tsm']
    assert ratio['flops'] == pytest.approx(rows['msnet']['flops'] /
                                           rows['tsm']['flops'])
    assert ratio['train_step'] == pytest.approx(
        rows['msnet']['train_step_s'] / rows['tsm']['train_step_s'])
    assert ratios['msnet_cp/tsm_cp']['train_step'] == pytest.approx(
        rows['msnet_cp']['train_step_s'] / rows['tsm_cp']['train_step_s'])
    saved = json.loads((tmp_path / 'benchmark.json').read_text())
    assert saved['ratios'] == report['ratios']
    table = (tmp_path / 'benchmark.md').read_text()
    assert '| MSNet-R50 | 1 | 2 |' in table
    assert '| MSNet-R50 / TSM-R50 | 1 | 2 |' in table
    assert '| MSNet-R50 with_cp / TSM-R50 with_cp | 1 | 2 |' in table


@pytest.mark.slow
def test_benchmark_tool_compiled_grid(tmp_path, load_tool, monkeypatch):
    """--compiled: the MS module alone under torch.compile, a training step
    and an inference timed after the warm-up round compiled them (dynamo
    captured graphs in this process). Dynamo's capture is under test, not
    inductor's code generation (minutes on a cold cache): the compile uses
    the 'eager' backend."""
    from torch._dynamo.utils import counters
    compile_module = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, 'compile',
                        lambda module: compile_module(module, backend='eager'))
    torch._dynamo.reset()
    counters.clear()
    tool = load_tool('benchmark')
    try:
        report = tool.main([
            '--models', 'ms', '--compiled', '--batch-sizes', '1', '--frames',
            '2', '--size', '32', '--rounds', '1', '--warmup', '1',
            '--out-dir', str(tmp_path), *GRID_ONLY
        ])
        unique_graphs = counters['stats']['unique_graphs']
    finally:
        # Dynamo remembers the sizes it saw and would compile later tests'
        # MotionSqueeze with symbolic (dynamic) shapes, for minutes.
        torch._dynamo.reset()
    row, = report['rows']
    assert row['train_step_s'] > 0 and row['inference_clips_per_s'] > 0
    assert unique_graphs >= 2  # train and eval


def test_with_cp_models_checkpoint_in_blocks_and_motion_squeeze(load_tool):
    config = load_tool('benchmark').parse_args([]).msnet_config
    cpu = torch.device('cpu')
    model, _ = parts.build('msnet_cp', 2, 32, cpu, config)
    assert model.backbone.with_cp and model.backbone.ms_layer2.with_cp
    model, _ = parts.build('msnet', 2, 32, cpu, config)
    assert not model.backbone.ms_layer2.with_cp
    model, _ = parts.build('tsm', 2, 32, cpu, config)
    assert not hasattr(model.backbone, 'ms_layer2')


@pytest.mark.slow
def test_benchmark_correlation_part_times_and_measures_each_kernel(
        tmp_path, load_tool):
    """The correlation part on a small case: the kernels timed in turn,
    peak memory in children, the ratios to 'fast' in the table."""
    tool = load_tool('benchmark')
    report = tool.main([
        '--models', '--correlation-case', '4', '16', '28', '3',
        '--correlation-rounds', '1', '--threads', '1', '--no-onnx',
        '--no-compile', '--out-dir', str(tmp_path)
    ])
    correlation = report['correlation']
    assert correlation['kernels'] == ['fast', 'reference']
    assert correlation['case'] == dict(batch=4, channels=16, size=28,
                                       max_disp=3)
    output_mb = 4 * 49 * 28 * 28 * 4 / 2**20
    for kernel in correlation['kernels']:
        assert correlation[kernel]['fwd_bwd_s'] > 0
        # At least the (4, 49, 28, 28) output is alive at the peak.
        assert correlation[kernel]['peak_memory_mb'] > output_mb
    table = (tmp_path / 'benchmark.md').read_text()
    assert '| reference |' in table and '| time / fast |' in table


@pytest.mark.slow
def test_benchmark_profile_part_names_where_ms_spends_its_step(
        tmp_path, load_tool):
    """--profile alone: the MS module's training step profiled, its ops by
    share of self time (largest first, shares of one total), in the
    table."""
    tool = load_tool('benchmark')
    report = tool.main([
        '--models', '--frames', '2', '--size', '64', '--rounds', '2',
        '--warmup', '0', '--threads', '1', '--profile', '--profile-ops', '40',
        '--no-onnx', '--no-compile', '--no-correlation', '--out-dir',
        str(tmp_path)
    ])
    profile = report['profile']
    assert profile['shape'] == [2, 512, 8, 8] and profile['steps'] == 2
    shares = [op['share'] for op in profile['ops']]
    assert shares == sorted(shares, reverse=True)
    assert 0.5 < sum(shares) <= 1 + 1e-9
    ops = {op['op']: op for op in profile['ops']}
    # Nine convolutions each step: the five 1x1 ones run as matrix products
    # on the CPU (the last, 64 -> 512, in the recomputed tail's own autograd
    # Function); the four depthwise ones are convolutions.
    assert ops['aten::convolution_backward']['calls_per_step'] == 4
    table = (tmp_path / 'benchmark.md').read_text()
    assert 'Where a training step of the MS module alone goes' in table
    assert '| aten::convolution_backward |' in table


def test_benchmark_report_writer_on_every_part():
    """The markdown of a report with every part (figures made up: this
    checks the writer, the measurements are checked above)."""
    row = dict(batch=1, frames=8, train_step_s=2.0,
               inference_clips_per_s=1.0, peak_train_memory_mb=100.0,
               params=1e6, flops=1e9)
    written = dict(
        command='python tools/benchmark.py', rounds=3,
        environment=dict(device='cpu', torch='2.13', threads=2,
                         correlation_impl='fast'),
        rows=[dict(row, model='tsm'), dict(row, model='msnet',
                                           train_step_s=2.1,
                                           inference_clips_per_s=0.8)],
        onnx=dict(graph='backbone', frames=8, size=224, threads=2,
                  tsm=dict(seconds=1.0), msnet=dict(seconds=1.04)),
        compile=dict(ms_compile=dict(first_call_s=7.25),
                     demo_compile=dict(first_call_s=50.0),
                     tsm_compile=dict(first_call_s=50.0),
                     msnet_compile=dict(first_call_s=55.0),
                     ms_onnx_torchscript=dict(nodes=83),
                     ms_onnx_dynamo=dict(nodes=89)),
        correlation=dict(case=dict(batch=56, channels=64, size=28,
                                   max_disp=7),
                         kernels=['fast', 'reference'],
                         fast=dict(fwd_bwd_s=0.1, peak_memory_mb=50.0),
                         reference=dict(fwd_bwd_s=0.12,
                                        peak_memory_mb=60.0)))
    table = markdown(written)
    assert '| MSNet-R50 / TSM-R50 | 1 | 8 | 1.050 |' in table
    assert '| MSNet/TSM | 1.040 |' in table
    assert '| MotionSqueeze(128) on (8, 128, 8, 8), first call | 7.2 s |' \
        in table or '7.3 s' in table
    assert '| MotionSqueeze(128) ONNX nodes, TorchScript exporter | 83 |' \
        in table
    assert '| first call MSNet-R50 / TSM-R50 | 1.100 |' in table
    assert '| reference | 0.120 | 60 | 1.200 | 1.200 |' in table
    ratio, = ratios(written['rows'])
    assert ratio['train_step'] == pytest.approx(1.05)
    # Inference as a time ratio: TSM's clips per second over MSNet's.
    assert ratio['inference_time'] == pytest.approx(1.25)


@pytest.mark.slow
def test_benchmark_onnx_part_on_tiny_recognizers(tmp_path, load_tool):
    """Both R50 recognizers, whole (--onnx-graph recognizer: what
    tools/export.py writes), exported and run by onnxruntime at 32 px."""
    tool = load_tool('benchmark')
    report = tool.main([
        '--models', '--size', '32', '--onnx-frames', '2', '--rounds', '1',
        '--warmup', '0', '--no-correlation', '--no-compile', '--onnx-graph',
        'recognizer', '--out-dir', str(tmp_path)
    ])
    onnx = report['onnx']
    assert onnx['graph'] == 'recognizer'
    assert onnx['tsm']['seconds'] > 0 and onnx['msnet']['seconds'] > 0
    path = tmp_path / 'onnx' / 'msnet_recognizer.onnx'
    import onnx as onnx_format
    graph = onnx_format.load(str(path)).graph
    assert [i.name for i in graph.input] == ['frames']
    assert len(graph.input[0].type.tensor_type.shape.dim) == 5
    assert '| MSNet/TSM |' in (tmp_path / 'benchmark.md').read_text()


@pytest.mark.slow
def test_benchmark_memory_child_measures_a_training_step(load_tool):
    """The MS module's training step on 4 clips x 4 frames of (512, 8, 8)
    features, in a child process: at least its (16, 512, 8, 8) float32
    output (2 MiB) is alive at the peak; the model is tiny, so far below
    100 MiB."""
    tool = load_tool('benchmark')
    args = tool.parse_args([])
    peak = parts.measure_memory(
        dict(kind='model', model='ms', batch=4, frames=4, size=64,
             config=args.msnet_config), torch.device('cpu'), threads=1)
    assert 2 <= peak < 100
    with pytest.raises(SystemExit):
        tool.parse_args(['--frames', '1'])


def test_compare_zoo_selects_zoo_entries_by_name(load_tool):
    tool = load_tool('compare_zoo')
    entries = tool.zoo_entries(['sthv2'])
    by_name = {entry['name']: entry for entry in entries}
    tsm = by_name['tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_sthv2-rgb']
    assert tsm['arch'] == 'TSM'
    assert osp.isfile(tsm['config'])
    # The metafile calls TSN's sthv2 entry Kinetics-400; the name decides.
    assert any(entry['arch'] == 'TSN' for entry in entries)
    assert all(entry['dataset'] == 'sthv2' for entry in entries)
    assert all('r50' in entry['name'] for entry in entries)


@pytest.mark.slow
def test_benchmark_compile_child_compiles_motion_squeeze():
    """The compile part's child (run in a fresh interpreter with an empty
    inductor cache by the tool), in this process: MotionSqueeze(128) on
    (8, 128, 8, 8), compiled output equal to eager."""
    result = parts.compile_child(dict(kind='ms', threads=None))
    assert result['first_call_s'] > 0
    assert result['max_abs_diff'] < 1e-5


@pytest.mark.slow
def test_gpu_check_script_reports_every_step_without_a_gpu(tmp_path):
    """tools/gpu_check.sh on a machine without CUDA: the CUDA tests are
    skipped, the kernel check and the benchmark say that no device is
    there, and the report holds every step with its exit status."""
    result = subprocess.run(['bash', 'tools/gpu_check.sh', str(tmp_path)],
                            cwd=REPO,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 1, result.stdout + result.stderr
    report = (tmp_path / 'gpu_check.md').read_text()
    assert '## CUDA tests' in report and 'exit status 0' in report
    assert 'skipped' in report
    assert ('## Kernels against the reference (`python tools/'
            'check_kernels.py --device cuda`, exit status 2)') in report
    assert 'error: --device cuda: this machine has no CUDA device' in report
    assert '## Benchmark' in report
