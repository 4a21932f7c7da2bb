"""MSNet-R50 against TSM-R50 (and the MS module alone), measured in one run.

For every (batch size, frames) of the grid: training-step time (forward,
backward, SGD update through mmengine's OptimWrapper), inference clips per
second (``test_step``), peak training memory, params and FLOPs (mmengine's
counter with the correlation handle), and the ratios MSNet/TSM. Then the
correlation kernels alone: fast against reference, forward and backward.

Times come from one process that runs the models in turn, round by round,
and keeps medians (msnet_plugin/benchmarking.py). Memory on CPU is the
growth of peak RSS over one training step, measured in a child process per
model (glibc set to return freed memory); on CUDA, max_memory_allocated.

TSM-R50 is configs/msnet_tsm_r50_sthv1.py with ResNetTSM as the backbone,
so the two recognizers differ by the MS module only. Weights are random
(speed does not depend on them).

Usage: python tools/benchmark.py [--batch-sizes 1 8] [--frames 8 16]
       [--size 224] [--rounds 5] [--models tsm msnet ms] [--device cpu]
       [--threads N] [--no-memory] [--no-correlation] [--out-dir DIR]
Writes DIR/benchmark.md and DIR/benchmark.json (default work_dirs/benchmark).
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
import torch
from mmengine.config import Config

from msnet_plugin import benchmarking as bench
from msnet_plugin.flops import build_recognizer, model_complexity  # noqa
from msnet_plugin.models import MotionSqueeze
from msnet_plugin.models.correlation import resolve_correlation_impl  # noqa

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MSNET_CONFIG = osp.join(REPO, 'configs', 'msnet_tsm_r50_sthv1.py')
MODELS = ('tsm', 'msnet', 'ms')
LABELS = dict(tsm='TSM-R50', msnet='MSNet-R50', ms='MS module alone')
#: The MS module alone reads R50 layer2 features: 512 channels at 1/8.
MS_CHANNELS, MS_STRIDE = 512, 8
#: The issue's correlation case: B = 56 pairs (8 clips x 7), C = 64,
#: 28x28 maps, d = 7.
CORRELATION_CASE = dict(batch=56, channels=64, size=28, max_disp=7)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--frames', type=int, nargs='+', default=[8, 16])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--models', nargs='+', choices=MODELS,
                        default=list(MODELS))
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--no-correlation', action='store_true',
                        help='skip the fast-vs-reference correlation part')
    parser.add_argument('--correlation-rounds', type=int, default=3)
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--memory-child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ('batch_sizes', 'frames'):
        if any(value < 1 for value in getattr(args, name)):
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if any(frames < 2 for frames in args.frames):
        parser.error('--frames must be >= 2 (MS pairs adjacent frames)')
    if args.size % 32:
        parser.error(f'--size must be a multiple of 32, got {args.size}')
    return args


def build(name: str, num_frames: int, size: int, device: torch.device):
    """The model ``name`` and its FLOP-counter input shape for one clip."""
    if name == 'ms':
        module = MotionSqueeze(MS_CHANNELS, num_segments=num_frames)
        side = size // MS_STRIDE
        return module.to(device), (num_frames, MS_CHANNELS, side, side)
    cfg = Config.fromfile(MSNET_CONFIG)
    cfg.model.backbone.pretrained = None
    if name == 'tsm':
        cfg.model.backbone.type = 'ResNetTSM'
        cfg.model.backbone.pop('ms_stages')
        cfg.model.backbone.pop('ms_cfg')
    model = build_recognizer(cfg, num_frames).to(device)
    return model, (1, num_frames, 3, size, size)


def steps(name: str, model, batch: int, num_frames: int, size: int,
          device: torch.device):
    """Train and inference callables of ``model`` for one batch."""
    if name == 'ms':
        side = size // MS_STRIDE
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(batch * num_frames, MS_CHANNELS, side, side,
                             generator=generator).to(device)
        return bench.module_steps(model, inputs)
    data = bench.recognizer_batch(model, batch, num_frames, size,
                                  model.cls_head.num_classes)
    return bench.recognizer_steps(model, data)


def memory_child(spec: dict) -> dict:
    """Run in a child process: peak RSS growth of one training step."""
    torch.manual_seed(0)
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    device = torch.device('cpu')
    if spec['kind'] == 'correlation':
        step = bench.correlation_step(spec['impl'], **CORRELATION_CASE)
    else:
        model, _ = build(spec['model'], spec['frames'], spec['size'], device)
        step = steps(spec['model'], model, spec['batch'], spec['frames'],
                     spec['size'], device)['train']
    step()  # warm-up: lazily allocated state (optimizer buffers) exists
    return dict(peak_mb=bench.peak_rss_growth_mb(step))


def measure_memory(spec: dict, args, device: torch.device,
                   step=None) -> float:
    """Peak training memory of one step, MiB (see the module doc)."""
    if device.type == 'cuda':
        step()
        return bench.cuda_peak_mb(step, device)
    spec = dict(spec, threads=args.threads)
    result = subprocess.run(
        [sys.executable, osp.abspath(__file__), '--memory-child',
         json.dumps(spec)],
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONWARNINGS='ignore', **bench.MEMORY_ENV))
    if result.returncode != 0:
        raise RuntimeError(f'memory measurement of {spec} failed:\n'
                           f'{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])['peak_mb']


def run_grid(args, device: torch.device) -> list:
    rows = []
    sync = ((lambda: torch.cuda.synchronize(device))
            if device.type == 'cuda' else (lambda: None))
    for num_frames in args.frames:
        models, shapes = {}, {}
        for name in args.models:
            models[name], shapes[name] = build(name, num_frames, args.size,
                                               device)
        complexity = {
            name: model_complexity(models[name], shapes[name])
            for name in args.models
        }
        for batch in args.batch_sizes:
            callables = {
                name: steps(name, models[name], batch, num_frames,
                            args.size, device)
                for name in args.models
            }
            print(f'# batch {batch}, {num_frames} frames: timing', flush=True)
            train = bench.alternating_medians(
                {name: c['train'] for name, c in callables.items()},
                args.rounds, args.warmup, sync)
            infer = bench.alternating_medians(
                {name: c['infer'] for name, c in callables.items()},
                args.rounds, args.warmup, sync)
            for name in args.models:
                memory = None
                if not args.no_memory:
                    print(f'# batch {batch}, {num_frames} frames: memory of '
                          f'{name}', flush=True)
                    memory = measure_memory(
                        dict(kind='model', model=name, batch=batch,
                             frames=num_frames, size=args.size), args,
                        device, callables[name]['train'])
                rows.append(
                    dict(model=name, batch=batch, frames=num_frames,
                         size=args.size,
                         train_step_s=train[name]['median'],
                         train_step_times_s=train[name]['times'],
                         inference_clips_per_s=batch /
                         infer[name]['median'],
                         inference_times_s=infer[name]['times'],
                         peak_train_memory_mb=memory,
                         params=complexity[name]['params'],
                         flops=complexity[name]['flops'],
                         correlation_flops=complexity[name]
                         ['correlation_flops']))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def run_correlation(args, device: torch.device) -> dict:
    """Fast against reference correlation, forward and backward."""
    impls = ('fast', 'reference')
    sync = ((lambda: torch.cuda.synchronize(device))
            if device.type == 'cuda' else (lambda: None))
    case = CORRELATION_CASE
    callables = {
        impl: bench.correlation_step(impl, **case)
        for impl in impls
    }
    if device.type == 'cuda':
        raise SystemExit('the correlation part runs on CPU tensors; use '
                         '--no-correlation with --device cuda')
    print('# correlation: timing', flush=True)
    times = bench.alternating_medians(callables, args.correlation_rounds, 1,
                                      sync)
    result = dict(case=case)
    for impl in impls:
        memory = None
        if not args.no_memory:
            memory = measure_memory(dict(kind='correlation', impl=impl), args,
                                    device, callables[impl])
        result[impl] = dict(fwd_bwd_s=times[impl]['median'],
                            times_s=times[impl]['times'],
                            peak_memory_mb=memory)
    return result


def ratios(rows: list) -> list:
    """MSNet/TSM for every (batch, frames) where both were measured."""
    out = []
    keyed = {(r['model'], r['batch'], r['frames']): r for r in rows}
    for (model, batch, frames), ms_row in keyed.items():
        tsm_row = keyed.get(('tsm', batch, frames))
        if model != 'msnet' or tsm_row is None:
            continue
        memory = None
        if ms_row['peak_train_memory_mb'] is not None:
            memory = bench.ratio(ms_row['peak_train_memory_mb'],
                                 tsm_row['peak_train_memory_mb'])
        out.append(
            dict(batch=batch, frames=frames,
                 train_step=bench.ratio(ms_row['train_step_s'],
                                        tsm_row['train_step_s']),
                 inference_time=bench.ratio(
                     tsm_row['inference_clips_per_s'],
                     ms_row['inference_clips_per_s']),
                 peak_train_memory=memory,
                 params=bench.ratio(ms_row['params'], tsm_row['params']),
                 flops=bench.ratio(ms_row['flops'], tsm_row['flops'])))
    return out


def _fmt(value, digits=3):
    if value is None:
        return 'n/a'
    return f'{value:.{digits}f}'


def markdown(report: dict) -> str:
    lines = [
        f'Device: {report["environment"]["device"]}, torch '
        f'{report["environment"]["torch"]}, '
        f'{report["environment"]["threads"]} threads; medians of '
        f'{report["rounds"]} alternating rounds; {report["command"]}', '',
        '| model | batch | frames | train step (s) | inference (clips/s) '
        '| peak train memory (MiB) | params (M) | FLOPs/clip (G) |',
        '|---|---|---|---|---|---|---|---|'
    ]
    for row in report['rows']:
        lines.append(
            f'| {LABELS[row["model"]]} | {row["batch"]} | {row["frames"]} '
            f'| {_fmt(row["train_step_s"])} '
            f'| {_fmt(row["inference_clips_per_s"])} '
            f'| {_fmt(row["peak_train_memory_mb"], 0)} '
            f'| {row["params"] / 1e6:.3f} | {row["flops"] / 1e9:.3f} |')
    if report['ratios']:
        lines += [
            '', '| MSNet/TSM | batch | frames | train step | inference time '
            '| peak train memory | params | FLOPs |',
            '|---|---|---|---|---|---|---|---|'
        ]
        for r in report['ratios']:
            lines.append(
                f'| ratio | {r["batch"]} | {r["frames"]} '
                f'| {_fmt(r["train_step"])} | {_fmt(r["inference_time"])} '
                f'| {_fmt(r["peak_train_memory"])} | {_fmt(r["params"])} '
                f'| {_fmt(r["flops"])} |')
    corr = report.get('correlation')
    if corr:
        case = corr['case']
        fast, ref = corr['fast'], corr['reference']
        memory_ratio = (None if fast['peak_memory_mb'] is None else
                        bench.ratio(fast['peak_memory_mb'],
                                    ref['peak_memory_mb']))
        lines += [
            '', f'Correlation forward+backward, B={case["batch"]}, '
            f'C={case["channels"]}, {case["size"]}x{case["size"]}, '
            f'd={case["max_disp"]}:', '',
            '| kernel | time (s) | peak memory (MiB) |', '|---|---|---|',
            f'| fast | {_fmt(fast["fwd_bwd_s"])} '
            f'| {_fmt(fast["peak_memory_mb"], 0)} |',
            f'| reference | {_fmt(ref["fwd_bwd_s"])} '
            f'| {_fmt(ref["peak_memory_mb"], 0)} |',
            f'| fast/reference | '
            f'{_fmt(bench.ratio(fast["fwd_bwd_s"], ref["fwd_bwd_s"]))} '
            f'| {_fmt(memory_ratio)} |'
        ]
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return None
    device = torch.device(args.device)
    torch.manual_seed(0)
    started = time.time()
    report = dict(
        command='python tools/benchmark.py ' + ' '.join(
            sys.argv[1:] if argv is None else argv),
        rounds=args.rounds,
        environment=dict(
            device=(torch.cuda.get_device_name(device) if device.type ==
                    'cuda' else f'{platform.processor() or "cpu"}, '
                    f'{os.cpu_count()} cores'),
            torch=torch.__version__, threads=torch.get_num_threads(),
            correlation_impl=resolve_correlation_impl(
                None, torch.zeros(1, device=device)),
            load_average=os.getloadavg()),
        rows=run_grid(args, device) if args.models else [])
    report['ratios'] = ratios(report['rows'])
    if not args.no_correlation:
        report['correlation'] = run_correlation(args, device)
    report['seconds'] = time.time() - started
    bench.write_report(args.out_dir, 'benchmark', report, markdown(report))
    return report


if __name__ == '__main__':
    main()
