"""MSNet-R50 against TSM-R50 (and the MS module alone), measured in one run.

Parts (each can be skipped):

- the grid: for every (batch size, frames), training-step time (forward,
  backward, SGD update through mmengine's OptimWrapper), inference clips per
  second (``test_step``), peak training memory, params and FLOPs (with the
  correlation counted), for TSM and MSNet, and both again with
  ``with_cp=True`` (activation checkpointing in the ResNet blocks and in
  MotionSqueeze), with the ratios MSNet/TSM;
- ``onnx``: both backbones exported to ONNX and run by onnxruntime on
  (frames, 3, size, size), MSNet/TSM;
- ``compile``: MotionSqueeze(128) on (8, 128, 8, 8) and the whole demo
  recognizer (configs/msnet_r18_demo_synthetic.py, one clip of 8 frames at
  64 px): ``torch.compile`` first call from a cold cache (a child process
  with an empty inductor cache), and the ONNX node count of
  MotionSqueeze(128) for both exporters;
- ``correlation``: the correlation alone at the issue's case (B = 56 pairs,
  C = 64, 28x28, d = 7; ``--correlation-case``), forward and backward,
  time and peak memory, for
  today's kernels ('fast', 'reference'; on CUDA also 'mmcv' and 'triton'
  where they run) and the baseline: the 'fast' kernel of git revision
  ``--baseline-rev`` (by default the last one before correlation v2), loaded
  from git;
- ``--autograd`` (alone): each hand-written autograd Function against its
  plain alternative, time and peak memory
  (msnet_plugin/benchmark/autograd.py);
- ``--profile``: torch.profiler over training steps of the MS module alone
  (512 channels at 1/8 of ``--size``, the first of ``--frames``), the ops
  that take its time, by self CPU (or CUDA) time. Off by default.

Times come from one process that runs the candidates in turn, round by
round, and keeps medians (msnet_plugin/benchmarking.py). Memory on CPU is
the growth of peak RSS over one training step, measured in a child process
per model (glibc set to return freed memory); on CUDA, max_memory_allocated.

TSM-R50 is configs/msnet_tsm_r50_sthv1.py with ResNetTSM as the backbone,
so the two recognizers differ by the MS module only. Weights are random
(speed does not depend on them).

Usage: python tools/benchmark.py [--batch-sizes 1 8] [--frames 8 16]
       [--size 224] [--rounds 5] [--models tsm msnet tsm_cp msnet_cp ms]
       [--device cpu] [--threads N] [--no-memory] [--no-correlation]
       [--no-onnx] [--no-compile] [--profile] [--baseline-rev REV]
       [--correlation-case PAIRS CHANNELS SIZE MAX_DISP] [--autograd]
       [--out-dir DIR]
Writes DIR/benchmark.md and DIR/benchmark.json (default work_dirs/benchmark).
"""
import argparse
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time
import types

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
import torch
from mmengine.config import Config

from msnet_plugin import benchmarking as bench
from msnet_plugin.flops import build_recognizer, model_complexity
from msnet_plugin.models import MotionSqueeze
from msnet_plugin.models.correlation import (mmcv_correlation_available,
                                             resolve_correlation_impl,
                                             triton_available)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MSNET_CONFIG = osp.join(REPO, 'configs', 'msnet_tsm_r50_sthv1.py')
DEMO_CONFIG = osp.join(REPO, 'configs', 'msnet_r18_demo_synthetic.py')
MODELS = ('tsm', 'msnet', 'tsm_cp', 'msnet_cp', 'ms')
LABELS = dict(tsm='TSM-R50', msnet='MSNet-R50', tsm_cp='TSM-R50 with_cp',
              msnet_cp='MSNet-R50 with_cp', ms='MS module alone')
#: (MSNet, TSM) pairs whose ratios the report gives.
PAIRS = (('msnet', 'tsm'), ('msnet_cp', 'tsm_cp'))
#: The MS module alone reads R50 layer2 features: 512 channels at 1/8.
MS_CHANNELS, MS_STRIDE = 512, 8
#: The issue's correlation case: B = 56 pairs (8 clips x 7), C = 64,
#: 28x28 maps, d = 7.
CORRELATION_CASE = dict(batch=56, channels=64, size=28, max_disp=7)
CORRELATION_KEYS = ('batch', 'channels', 'size', 'max_disp')
#: The last revision with the per-clip 'fast' kernel (before correlation v2).
BASELINE_REV = '5b51537fec1c98350ca324fe3564a74df70a9042'
BASELINE = 'baseline'
#: The compile and ONNX case of the issue: MotionSqueeze(128) on
#: (8, 128, 8, 8); the demo recognizer on one clip of 8 frames at 64 px.
COMPILE_MS = dict(channels=128, frames=8, size=8)
COMPILE_DEMO = dict(frames=8, size=64)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--frames', type=int, nargs='+', default=[8, 16])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--models', nargs='*', choices=MODELS,
                        default=list(MODELS),
                        help='models of the grid (none: skip the grid)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--no-memory', action='store_true')
    parser.add_argument('--no-correlation', action='store_true',
                        help='skip the correlation part')
    parser.add_argument('--correlation-rounds', type=int, default=3)
    parser.add_argument(
        '--correlation-case', type=int, nargs=4,
        default=[CORRELATION_CASE[key] for key in CORRELATION_KEYS],
        metavar=('PAIRS', 'CHANNELS', 'SIZE', 'MAX_DISP'),
        help='the correlation part\'s maps (default: the issue\'s case)')
    parser.add_argument('--baseline-rev', default=BASELINE_REV,
                        help='git revision whose fast kernel is the '
                        "correlation baseline ('none': no baseline)")
    parser.add_argument('--no-onnx', action='store_true',
                        help='skip the onnxruntime backbones part')
    parser.add_argument('--onnx-frames', type=int, default=8)
    parser.add_argument('--no-compile', action='store_true',
                        help='skip the torch.compile and ONNX-graph part')
    parser.add_argument('--profile', action='store_true',
                        help='add where the MS module alone spends a '
                        'training step (torch.profiler)')
    parser.add_argument('--profile-ops', type=int, default=12,
                        help='ops listed by --profile')
    parser.add_argument('--autograd', action='store_true',
                        help='only compare the hand-written autograd '
                        'Functions with their plain alternatives '
                        '(msnet_plugin/benchmark/autograd.py), --rounds '
                        'rounds; writes OUT_DIR/autograd.md')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.add_argument('--memory-child', help=argparse.SUPPRESS)
    parser.add_argument('--compile-child', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ('batch_sizes', 'frames'):
        if any(value < 1 for value in getattr(args, name)):
            parser.error(f'--{name.replace("_", "-")} must be >= 1')
    if any(frames < 2 for frames in args.frames + [args.onnx_frames]):
        parser.error('--frames and --onnx-frames must be >= 2 (MS pairs '
                     'adjacent frames)')
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
    if name.startswith('tsm'):
        cfg.model.backbone.type = 'ResNetTSM'
        cfg.model.backbone.pop('ms_stages')
        cfg.model.backbone.pop('ms_cfg')
    # MSResNetTSM passes with_cp on to its MotionSqueeze modules.
    cfg.model.backbone.with_cp = name.endswith('_cp')
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


def load_baseline_kernel(rev: str):
    """The 'fast' correlation kernel of git revision ``rev``, loaded from
    git without touching the working tree: (f1, f2, d) -> correlation."""
    try:
        result = subprocess.run(
            ['git', '-C', REPO, 'show',
             f'{rev}:msnet_plugin/models/fast_correlation.py'],
            capture_output=True, text=True)
    except FileNotFoundError:  # no git
        raise RuntimeError('git is not installed; pass --baseline-rev none')
    if result.returncode != 0:
        raise RuntimeError(f'cannot read the baseline kernel of {rev!r} from '
                           f'git: {result.stderr.strip()}; pass '
                           '--baseline-rev none to skip it')
    module = types.ModuleType('baseline_fast_correlation')
    exec(compile(result.stdout, f'{rev}:fast_correlation.py', 'exec'),
         module.__dict__)
    return lambda f1, f2, d: module.FastLocalCorrelation.apply(f1, f2, d)


def correlation_kernel(impl: str, baseline_rev: str):
    """What correlation_step runs for ``impl``: a kernel name, or the
    baseline's Function."""
    return load_baseline_kernel(baseline_rev) if impl == BASELINE else impl


def memory_child(spec: dict) -> dict:
    """Run in a child process: peak RSS growth of one training step."""
    torch.manual_seed(0)
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    device = torch.device('cpu')
    if spec['kind'] == 'correlation':
        step = bench.correlation_step(
            correlation_kernel(spec['impl'], spec['baseline_rev']),
            **spec['case'])
    else:
        model, _ = build(spec['model'], spec['frames'], spec['size'], device)
        step = steps(spec['model'], model, spec['batch'], spec['frames'],
                     spec['size'], device)['train']
    step()  # warm-up: lazily allocated state (optimizer buffers) exists
    return dict(peak_mb=bench.peak_rss_growth_mb(step))


def _child(flag: str, spec: dict, env: dict) -> dict:
    """Run this tool with ``flag spec`` in a fresh interpreter; its last
    output line, as JSON."""
    result = subprocess.run(
        [sys.executable, osp.abspath(__file__), flag, json.dumps(spec)],
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONWARNINGS='ignore', **env))
    if result.returncode != 0:
        raise RuntimeError(f'{flag} {spec} failed:\n{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def measure_memory(spec: dict, args, device: torch.device,
                   step=None) -> float:
    """Peak training memory of one step, MiB (see the module doc)."""
    if device.type == 'cuda':
        step()
        return bench.cuda_peak_mb(step, device)
    spec = dict(spec, threads=args.threads)
    return _child('--memory-child', spec, bench.MEMORY_ENV)['peak_mb']


def run_grid(args, device: torch.device) -> list:
    rows = []
    sync = bench_sync(device)
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


def bench_sync(device: torch.device):
    """What to call before reading the clock on ``device``."""
    if device.type == 'cuda':
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def correlation_impls(device: torch.device, baseline_rev: str) -> tuple:
    """The kernels the correlation part compares on ``device``; the
    baseline only where git can give it (a message says why not)."""
    impls = ['fast']
    if device.type == 'cuda':
        impls += [name for name, available in (
            ('mmcv', mmcv_correlation_available()),
            ('triton', triton_available())) if available]
    if baseline_rev != 'none':
        try:
            load_baseline_kernel(baseline_rev)
            impls.append(BASELINE)
        except (RuntimeError, OSError) as error:
            print(f'# correlation: no baseline ({error})', flush=True)
    return tuple(impls) + ('reference', )


def run_correlation(args, device: torch.device) -> dict:
    """The correlation kernels alone, forward and backward."""
    case = dict(zip(CORRELATION_KEYS, args.correlation_case))
    impls = correlation_impls(device, args.baseline_rev)
    callables = {
        impl: bench.correlation_step(
            correlation_kernel(impl, args.baseline_rev), **case,
            device=device)
        for impl in impls
    }
    print('# correlation: timing', flush=True)
    times = bench.alternating_medians(callables, args.correlation_rounds, 1,
                                      bench_sync(device))
    result = dict(case=case, kernels=list(impls),
                  baseline_rev=args.baseline_rev)
    for impl in impls:
        memory = None
        if not args.no_memory:
            memory = measure_memory(
                dict(kind='correlation', impl=impl, case=case,
                     baseline_rev=args.baseline_rev), args, device,
                callables[impl])
        result[impl] = dict(fwd_bwd_s=times[impl]['median'],
                            times_s=times[impl]['times'],
                            peak_memory_mb=memory)
    return result


def run_onnx(args, device: torch.device) -> dict:
    """Both backbones exported to ONNX (TorchScript exporter, optimised) and
    run by onnxruntime on the CPU, in turn."""
    from msnet_plugin.deploy import export_onnx
    from msnet_plugin.deploy.onnx_export import onnxruntime_session
    frames, size = args.onnx_frames, args.size
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(frames, 3, size, size, generator=generator)
    onnx_dir = osp.join(args.out_dir, 'onnx')
    os.makedirs(onnx_dir, exist_ok=True)
    sessions, files = {}, {}
    threads = torch.get_num_threads()
    for name in ('tsm', 'msnet'):
        backbone = build(name, frames, size, torch.device('cpu'))[0].backbone
        backbone.eval()  # (MMAction2's ResNet.train returns None)
        files[name] = osp.join(onnx_dir, f'{name}_backbone.onnx')
        print(f'# onnx: exporting the {name} backbone', flush=True)
        export_onnx(backbone, inputs, files[name], batch_multiple=frames)
        sessions[name] = onnxruntime_session(files[name], threads)
    feed = {'frames': inputs.numpy()}
    print('# onnx: timing', flush=True)
    times = bench.alternating_medians(
        {name: (lambda s=session: s.run(None, feed))
         for name, session in sessions.items()}, args.rounds, args.warmup)
    return dict(frames=frames, size=size, threads=threads,
                **{name: dict(seconds=times[name]['median'],
                              times_s=times[name]['times'])
                   for name in sessions})


def compile_child(spec: dict) -> dict:
    """Run in a child with an empty inductor cache: seconds from
    ``torch.compile`` to the first output, and its difference from eager."""
    torch.manual_seed(0)
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    if spec['kind'] == 'ms':
        case = COMPILE_MS
        module = MotionSqueeze(case['channels'], num_segments=case['frames'])
        inputs = torch.randn(case['frames'], case['channels'], case['size'],
                             case['size'])
    else:
        from msnet_plugin.deploy import build_frames_to_scores
        from msnet_plugin.deploy.frames_to_scores import example_frames
        case = COMPILE_DEMO
        module = build_frames_to_scores(DEMO_CONFIG)
        inputs = example_frames(case['frames'], (case['size'], ) * 2)
    module.eval()
    with torch.no_grad():
        expected = module(inputs)
        start = time.perf_counter()
        output = torch.compile(module)(inputs)
        seconds = time.perf_counter() - start
    return dict(first_call_s=seconds,
                max_abs_diff=float((output - expected).abs().max()))


def run_compile(args) -> dict:
    """torch.compile from a cold cache (children) and ONNX node counts."""
    from msnet_plugin.deploy import export_onnx
    from msnet_plugin.deploy.onnx_export import onnx_node_count
    result = {}
    for kind in ('ms', 'demo'):
        print(f'# compile: {kind}, cold cache', flush=True)
        with tempfile.TemporaryDirectory() as cache:
            result[f'{kind}_compile'] = _child(
                '--compile-child', dict(kind=kind, threads=args.threads),
                dict(TORCHINDUCTOR_CACHE_DIR=cache))
    case = COMPILE_MS
    module = MotionSqueeze(case['channels'], num_segments=case['frames'])
    module.eval()
    # Two clips: torch.export would fix a batch axis of size 1.
    inputs = torch.randn(2 * case['frames'], case['channels'], case['size'],
                         case['size'])
    with tempfile.TemporaryDirectory() as folder:
        for exporter in ('torchscript', 'dynamo'):
            print(f'# onnx graph of MotionSqueeze(128): {exporter}',
                  flush=True)
            path = osp.join(folder, f'{exporter}.onnx')
            start = time.perf_counter()
            export_onnx(module, inputs, path, exporter,
                        batch_multiple=case['frames'])
            result[f'ms_onnx_{exporter}'] = dict(
                nodes=onnx_node_count(path),
                export_s=time.perf_counter() - start)
    return result


def run_profile(args, device: torch.device) -> dict:
    """Self time per op of MS-module training steps (forward, backward,
    SGD update), as shares of the profiled total."""
    num_frames = args.frames[0]
    model, _ = build('ms', num_frames, args.size, device)
    train_step = steps('ms', model, args.batch_sizes[0], num_frames,
                       args.size, device)['train']
    for _ in range(args.warmup + 1):
        train_step()
    synchronize = bench_sync(device)
    synchronize()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == 'cuda':
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(args.rounds):
            train_step()
        synchronize()
    attribute = ('self_device_time_total'
                 if device.type == 'cuda' else 'self_cpu_time_total')
    events = [(event.key, getattr(event, attribute), event.count)
              for event in profiler.key_averages()]
    total = sum(spent for _, spent, _ in events) or 1
    events.sort(key=lambda event: -event[1])
    side = args.size // MS_STRIDE
    return dict(
        shape=[args.batch_sizes[0] * num_frames, MS_CHANNELS, side, side],
        steps=args.rounds,
        step_ms=total / 1000 / args.rounds,
        ops=[dict(op=key, share=spent / total, calls_per_step=count /
                  args.rounds) for key, spent, count in
             events[:args.profile_ops]])


def ratios(rows: list) -> list:
    """MSNet/TSM for every pair of :data:`PAIRS` and (batch, frames) where
    both were measured."""
    out = []
    keyed = {(r['model'], r['batch'], r['frames']): r for r in rows}
    for (model, batch, frames), ms_row in keyed.items():
        for msnet, tsm in PAIRS:
            tsm_row = keyed.get((tsm, batch, frames))
            if model != msnet or tsm_row is None:
                continue
            memory = None
            if ms_row['peak_train_memory_mb'] is not None:
                memory = bench.ratio(ms_row['peak_train_memory_mb'],
                                     tsm_row['peak_train_memory_mb'])
            out.append(
                dict(pair=f'{msnet}/{tsm}', batch=batch, frames=frames,
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


def _grid_markdown(report: dict) -> list:
    lines = [
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
            '', '| ratio | batch | frames | train step | inference time '
            '| peak train memory | params | FLOPs |',
            '|---|---|---|---|---|---|---|---|'
        ]
        for r in report['ratios']:
            msnet, tsm = r['pair'].split('/')
            lines.append(
                f'| {LABELS[msnet]} / {LABELS[tsm]} | {r["batch"]} '
                f'| {r["frames"]} | {_fmt(r["train_step"])} '
                f'| {_fmt(r["inference_time"])} '
                f'| {_fmt(r["peak_train_memory"])} | {_fmt(r["params"])} '
                f'| {_fmt(r["flops"])} |')
    return lines


def _onnx_markdown(onnx: dict) -> list:
    tsm, msnet = onnx['tsm']['seconds'], onnx['msnet']['seconds']
    return [
        f'onnxruntime, backbones on ({onnx["frames"]}, 3, {onnx["size"]}, '
        f'{onnx["size"]}), {onnx["threads"]} threads:', '',
        '| backbone | s/call |', '|---|---|',
        f'| TSM-R50 | {_fmt(tsm)} |', f'| MSNet-R50 | {_fmt(msnet)} |',
        f'| MSNet/TSM | {_fmt(bench.ratio(msnet, tsm))} |'
    ]


def _compile_markdown(compiled: dict) -> list:
    ms, demo = compiled['ms_compile'], compiled['demo_compile']
    return [
        'torch.compile from a cold cache (first call, inference) and ONNX '
        'graphs:', '', '| what | figure |', '|---|---|',
        f'| MotionSqueeze(128) on (8, 128, 8, 8), first call | '
        f'{_fmt(ms["first_call_s"], 1)} s |',
        f'| demo recognizer (1 clip, 8 x 64 px), first call | '
        f'{_fmt(demo["first_call_s"], 1)} s |',
        f'| MotionSqueeze(128) ONNX nodes, TorchScript exporter | '
        f'{compiled["ms_onnx_torchscript"]["nodes"]} |',
        f'| MotionSqueeze(128) ONNX nodes, dynamo exporter | '
        f'{compiled["ms_onnx_dynamo"]["nodes"]} |'
    ]


def _correlation_markdown(corr: dict) -> list:
    case = corr['case']
    fast = corr['fast']
    lines = [
        f'Correlation forward+backward, B={case["batch"]}, '
        f'C={case["channels"]}, {case["size"]}x{case["size"]}, '
        f'd={case["max_disp"]} (baseline: the fast kernel of '
        f'{corr["baseline_rev"][:12]}):', '',
        '| kernel | time (s) | peak memory (MiB) | time / fast | memory / '
        'fast |', '|---|---|---|---|---|'
    ]
    for impl in corr['kernels']:
        row = corr[impl]
        memory_ratio = (None if row['peak_memory_mb'] is None else
                        bench.ratio(row['peak_memory_mb'],
                                    fast['peak_memory_mb']))
        lines.append(
            f'| {impl} | {_fmt(row["fwd_bwd_s"])} '
            f'| {_fmt(row["peak_memory_mb"], 0)} '
            f'| {_fmt(bench.ratio(row["fwd_bwd_s"], fast["fwd_bwd_s"]))} '
            f'| {_fmt(memory_ratio)} |')
    return lines


def _profile_markdown(profile: dict) -> list:
    lines = [
        f'Where a training step of the MS module alone goes, '
        f'{tuple(profile["shape"])}, {profile["steps"]} steps profiled, '
        f'{profile["step_ms"]:.1f} ms of op self time per step:', '',
        '| op | share of self time | calls per step |', '|---|---|---|'
    ]
    lines += [
        f'| {op["op"]} | {op["share"]:.1%} | {op["calls_per_step"]:g} |'
        for op in profile['ops']
    ]
    return lines


def markdown(report: dict) -> str:
    env = report['environment']
    lines = [
        f'Device: {env["device"]}, torch {env["torch"]}, '
        f'{env["threads"]} threads, correlation kernel '
        f'{env["correlation_impl"]!r}; medians of {report["rounds"]} '
        f'alternating rounds; {report["command"]}'
    ]
    if report['rows']:
        lines += [''] + _grid_markdown(report)
    for part, writer in (('onnx', _onnx_markdown),
                         ('compile', _compile_markdown),
                         ('correlation', _correlation_markdown),
                         ('profile', _profile_markdown)):
        if report.get(part):
            lines += [''] + writer(report[part])
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return None
    if args.compile_child:
        print(json.dumps(compile_child(json.loads(args.compile_child))))
        return None
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    if args.autograd:
        from msnet_plugin.benchmark.autograd import (
            autograd_markdown, compare_autograd_functions)
        result = compare_autograd_functions(
            rounds=args.rounds, device=device, memory=not args.no_memory,
            threads=args.threads)
        bench.write_report(args.out_dir, 'autograd', result,
                           autograd_markdown(result))
        return result
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
                'auto', torch.zeros(1, device=device)),
            load_average=os.getloadavg()),
        rows=run_grid(args, device) if args.models else [])
    report['ratios'] = ratios(report['rows'])
    if not args.no_onnx:
        report['onnx'] = run_onnx(args, device)
    if not args.no_compile:
        report['compile'] = run_compile(args)
    if not args.no_correlation:
        report['correlation'] = run_correlation(args, device)
    if args.profile:
        report['profile'] = run_profile(args, device)
    report['seconds'] = time.time() - started
    bench.write_report(args.out_dir, 'benchmark', report, markdown(report))
    return report


if __name__ == '__main__':
    main()
