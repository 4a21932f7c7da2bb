"""The parts of tools/benchmark.py: MSNet-R50 against TSM-R50, measured.

Each part is ``run_<part>(args, device) -> dict`` (``args``: the tool's
parsed arguments), a JSON-able result that :mod:`.report` turns into a
table. Adding a measurement is one function here, one writer in
:mod:`.report` and one flag in the tool.

Times come from one process that runs the candidates in turn, round by
round, and keeps medians (:func:`~msnet_plugin.benchmarking.
alternating_medians`). Memory on CPU is the growth of peak RSS over one
training step, measured in a fresh interpreter per candidate
(:func:`in_child`); on CUDA, ``max_memory_allocated``.

TSM-R50 is the MSNet config (``args.msnet_config``) with ResNetTSM as the
backbone, so the two recognizers differ by the MS module only. Weights are
random (speed does not depend on them).
"""
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
import time

import torch
from mmengine.config import Config

from .. import benchmarking as bench
from ..flops import build_recognizer, model_complexity
from ..models import MotionSqueeze
from ..models.correlation import mmcv_correlation_available, triton_available

MODELS = ('tsm', 'msnet', 'tsm_cp', 'msnet_cp', 'ms')
#: The MS module alone reads R50 layer2 features: 512 channels at 1/8.
MS_CHANNELS, MS_STRIDE = 512, 8
#: The correlation case: B = 56 pairs (8 clips x 7), C = 64, 28x28, d = 7.
CORRELATION_KEYS = ('batch', 'channels', 'size', 'max_disp')
CORRELATION_CASE = dict(batch=56, channels=64, size=28, max_disp=7)
#: The compile and ONNX case: MotionSqueeze(128) on (8, 128, 8, 8); the
#: demo recognizer on one clip of 8 frames at 64 px; the R50 backbones of
#: TSM and MSNet (eval) on 8 frames at 64 px.
COMPILE_MS = dict(channels=128, frames=8, size=8)
COMPILE_DEMO = dict(frames=8, size=64)
COMPILE_R50 = dict(frames=8, size=64)
COMPILE_KINDS = ('ms', 'demo', 'tsm', 'msnet')


def device_sync(device: torch.device):
    """What to call before reading the clock on ``device``."""
    if device.type == 'cuda':
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def build(name: str, num_frames: int, size: int, device: torch.device,
          config: str):
    """The model ``name`` (one of :data:`MODELS`) and its FLOP-counter input
    shape for one clip; the recognizers come from ``config``."""
    if name == 'ms':
        module = MotionSqueeze(MS_CHANNELS, num_segments=num_frames)
        side = size // MS_STRIDE
        return module.to(device), (num_frames, MS_CHANNELS, side, side)
    cfg = Config.fromfile(config)
    cfg.model.backbone.pretrained = None
    if name.startswith('tsm'):
        cfg.model.backbone.type = 'ResNetTSM'
        cfg.model.backbone.pop('ms_stages')
        cfg.model.backbone.pop('ms_cfg')
    # MSResNetTSM passes with_cp on to its MotionSqueeze modules.
    cfg.model.backbone.with_cp = name.endswith('_cp')
    model = build_recognizer(cfg, num_frames).to(device)
    return model, (1, num_frames, 3, size, size)


def compile_model(name: str, model) -> None:
    """``torch.compile`` (inductor) in place: the MS module itself, or a
    recognizer's backbone (its head and data preprocessor stay eager)."""
    (model if name == 'ms' else model.backbone).compile()


def steps(name: str, model, batch: int, num_frames: int, size: int,
          device: torch.device) -> dict:
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


def in_child(function: str, spec: dict, env: dict = None,
             module: str = __name__) -> dict:
    """``function(spec)`` of ``module`` (this one by default) in a fresh
    interpreter (the same msnet_plugin, ``env`` added to the environment);
    its JSON result."""
    code = ('import importlib, json, sys; '
            'print(json.dumps(getattr(importlib.import_module(sys.argv[1]), '
            'sys.argv[2])(json.loads(sys.argv[3]))))')
    package_root = osp.dirname(osp.dirname(osp.dirname(__file__)))
    path = os.pathsep.join(
        p for p in (package_root, os.environ.get('PYTHONPATH')) if p)
    result = subprocess.run(
        [sys.executable, '-c', code, module, function, json.dumps(spec)],
        capture_output=True, text=True,
        env=dict(os.environ, PYTHONWARNINGS='ignore', PYTHONPATH=path,
                 **(env or {})))
    if result.returncode != 0:
        raise RuntimeError(f'{function} {spec} failed:\n'
                           f'{result.stderr[-3000:]}')
    return json.loads(result.stdout.strip().splitlines()[-1])


def memory_child(spec: dict) -> dict:
    """Run by :func:`measure_memory` in a child: peak RSS growth of one
    training step of a model (``spec['kind'] == 'model'``) or of a
    correlation kernel."""
    torch.manual_seed(0)
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    device = torch.device('cpu')
    if spec['kind'] == 'correlation':
        step = bench.correlation_step(spec['impl'], **spec['case'])
    else:
        model, _ = build(spec['model'], spec['frames'], spec['size'], device,
                         spec['config'])
        if spec.get('compiled'):
            compile_model(spec['model'], model)
        step = steps(spec['model'], model, spec['batch'], spec['frames'],
                     spec['size'], device)['train']
    step()  # warm-up: lazily allocated state (optimizer buffers) exists
    return dict(peak_mb=bench.peak_rss_growth_mb(step))


def measure_memory(spec: dict, device: torch.device, step=None,
                   threads: int = None) -> float:
    """Peak training memory of one step, MiB: on CUDA of ``step`` here, on
    CPU of ``spec``'s step in a child (see the module doc)."""
    if device.type == 'cuda':
        step()
        return bench.cuda_peak_mb(step, device)
    return in_child('memory_child', dict(spec, threads=threads),
                    bench.MEMORY_ENV)['peak_mb']


def run_grid(args, device: torch.device) -> list:
    """For every (frames, batch): training step, inference clips per
    second, peak training memory, params and FLOPs of ``args.models``."""
    rows = []
    for num_frames in args.frames:
        built = {name: build(name, num_frames, args.size, device,
                             args.msnet_config) for name in args.models}
        complexity = {name: model_complexity(model, shape)
                      for name, (model, shape) in built.items()}
        if args.compiled:
            # After the FLOP counter (it traces the eager model); the warm-up
            # rounds compile (train and eval are two graphs).
            for name, (model, _) in built.items():
                compile_model(name, model)
        for batch in args.batch_sizes:
            callables = {name: steps(name, model, batch, num_frames,
                                     args.size, device)
                         for name, (model, _) in built.items()}
            print(f'# batch {batch}, {num_frames} frames: timing', flush=True)
            times = {
                kind: bench.alternating_medians(
                    {name: c[kind] for name, c in callables.items()},
                    args.rounds, args.warmup, device_sync(device))
                for kind in ('train', 'infer')
            }
            for name in args.models:
                memory = None
                if not args.no_memory:
                    print(f'# batch {batch}, {num_frames} frames: memory of '
                          f'{name}', flush=True)
                    memory = measure_memory(
                        dict(kind='model', model=name, batch=batch,
                             frames=num_frames, size=args.size,
                             config=args.msnet_config,
                             compiled=args.compiled), device,
                        callables[name]['train'], args.threads)
                train, infer = times['train'][name], times['infer'][name]
                rows.append(dict(
                    model=name, batch=batch, frames=num_frames,
                    size=args.size, train_step_s=train['median'],
                    train_step_times_s=train['times'],
                    inference_clips_per_s=batch / infer['median'],
                    inference_times_s=infer['times'],
                    peak_train_memory_mb=memory, **complexity[name]))
                print(json.dumps(rows[-1]), flush=True)
    return rows


def correlation_impls(device: torch.device) -> tuple:
    """The kernels the correlation part compares on ``device``."""
    impls = ['fast']
    if device.type == 'cuda':
        impls += [name for name, available in (
            ('mmcv', mmcv_correlation_available()),
            ('triton', triton_available())) if available]
    return tuple(impls) + ('reference', )


def run_correlation(args, device: torch.device) -> dict:
    """The correlation kernels alone on ``args.correlation_case``, forward
    and backward: time and peak memory."""
    case = dict(zip(CORRELATION_KEYS, args.correlation_case))
    impls = correlation_impls(device)
    callables = {impl: bench.correlation_step(impl, **case, device=device)
                 for impl in impls}
    print('# correlation: timing', flush=True)
    times = bench.alternating_medians(callables, args.correlation_rounds, 1,
                                      device_sync(device))
    result = dict(case=case, kernels=list(impls))
    for impl in impls:
        memory = None
        if not args.no_memory:
            memory = measure_memory(
                dict(kind='correlation', impl=impl, case=case), device,
                callables[impl], args.threads)
        result[impl] = dict(fwd_bwd_s=times[impl]['median'],
                            times_s=times[impl]['times'],
                            peak_memory_mb=memory)
    return result


def run_onnx(args, device: torch.device) -> dict:
    """Both models exported to ONNX (TorchScript exporter, optimised) and run
    by onnxruntime on the CPU, in turn: the backbones on (frames, 3, size,
    size) features, or (``args.onnx_graph == 'recognizer'``) the whole
    recognizer as tools/export.py writes it (:class:`FramesToScores`) on one
    clip of (1, frames, 3, size, size) pixels."""
    from ..deploy import FramesToScores, export_onnx
    from ..deploy.frames_to_scores import example_frames
    from ..deploy.onnx_export import onnxruntime_session
    frames, size, graph = args.onnx_frames, args.size, args.onnx_graph
    if graph == 'recognizer':
        inputs = example_frames(frames, (size, size))
    else:
        generator = torch.Generator().manual_seed(0)
        inputs = torch.randn(frames, 3, size, size, generator=generator)
    onnx_dir = osp.join(args.out_dir, 'onnx')
    os.makedirs(onnx_dir, exist_ok=True)
    sessions = {}
    threads = torch.get_num_threads()
    for name in ('tsm', 'msnet'):
        model = build(name, frames, size, torch.device('cpu'),
                      args.msnet_config)[0]
        module = (FramesToScores(model, frames)
                  if graph == 'recognizer' else model.backbone)
        module.eval()  # (MMAction2's ResNet.train returns None)
        path = osp.join(onnx_dir, f'{name}_{graph}.onnx')
        print(f'# onnx: exporting the {name} {graph}', flush=True)
        export_onnx(module, inputs, path,
                    batch_multiple=1 if graph == 'recognizer' else frames)
        sessions[name] = onnxruntime_session(path, threads)
    feed = {'frames': inputs.numpy()}
    print('# onnx: timing', flush=True)
    times = bench.alternating_medians(
        {name: (lambda s=session: s.run(None, feed))
         for name, session in sessions.items()}, args.rounds, args.warmup)
    return dict(graph=graph, frames=frames, size=size, threads=threads,
                **{name: dict(seconds=times[name]['median'],
                              times_s=times[name]['times'])
                   for name in sessions})


def compile_child(spec: dict) -> dict:
    """Run by :func:`run_compile` in a child with an empty inductor cache:
    seconds from ``torch.compile`` to the first output, and its difference
    from eager (:func:`~msnet_plugin.deploy.compare_inference_speed`)."""
    from ..deploy import compare_inference_speed
    torch.manual_seed(0)
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    if spec['kind'] == 'ms':
        case = COMPILE_MS
        module = MotionSqueeze(case['channels'], num_segments=case['frames'])
        inputs = torch.randn(case['frames'], case['channels'], case['size'],
                             case['size'])
    elif spec['kind'] in ('tsm', 'msnet'):
        case = COMPILE_R50
        module = build(spec['kind'], case['frames'], case['size'],
                       torch.device('cpu'), spec['msnet_config'])[0].backbone
        inputs = torch.randn(case['frames'], 3, case['size'], case['size'])
    else:
        from ..deploy import build_frames_to_scores
        from ..deploy.frames_to_scores import example_frames
        case = COMPILE_DEMO
        module = build_frames_to_scores(spec['config'])
        inputs = example_frames(case['frames'], (case['size'], ) * 2)
    # Not module.eval(): MMAction2's ResNet.train returns None.
    module.eval()
    compiled = compare_inference_speed(module, inputs, repeats=1)['compiled']
    return dict(first_call_s=compiled['first_call_s'],
                max_abs_diff=compiled['max_abs_diff'])


def run_compile(args, device: torch.device) -> dict:
    """torch.compile from a cold cache (children) of MotionSqueeze(128), of
    the demo recognizer and of the TSM-R50 and MSNet-R50 backbones, and the
    ONNX node counts of MotionSqueeze(128) for both exporters (on the
    CPU)."""
    from ..deploy import export_onnx
    from ..deploy.onnx_export import onnx_node_count
    result = {}
    for kind in COMPILE_KINDS:
        print(f'# compile: {kind}, cold cache', flush=True)
        with tempfile.TemporaryDirectory() as cache:
            result[f'{kind}_compile'] = in_child(
                'compile_child', dict(kind=kind, threads=args.threads,
                                      config=args.demo_config,
                                      msnet_config=args.msnet_config),
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
    """Self time per op of MS-module training steps (forward, backward, SGD
    update; 512 channels at 1/8 of ``args.size``, the first of
    ``args.frames``), as shares of the profiled total, largest first."""
    num_frames = args.frames[0]
    model, _ = build('ms', num_frames, args.size, device, args.msnet_config)
    train_step = steps('ms', model, args.batch_sizes[0], num_frames,
                       args.size, device)['train']
    for _ in range(args.warmup + 1):
        train_step()
    synchronize = device_sync(device)
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
