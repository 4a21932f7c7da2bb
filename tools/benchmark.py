"""MSNet-R50 against TSM-R50 (and the MS module alone), measured in one run.

Usage: python tools/benchmark.py [--batch-sizes 1 8] [--frames 8 16]
       [--size 224] [--rounds 5] [--models tsm msnet tsm_cp msnet_cp ms]
       [--device cpu] [--threads N] [--no-memory] [--no-correlation]
       [--compiled] [--no-onnx] [--no-compile] [--profile]
       [--correlation-case PAIRS CHANNELS SIZE MAX_DISP] [--out-dir DIR]
       python tools/benchmark.py --autograd [--rounds 7] [--threads N]
Writes DIR/benchmark.md and DIR/benchmark.json (default work_dirs/benchmark);
with --autograd, DIR/autograd.md and DIR/autograd.json.

The parts, each a function of msnet_plugin/benchmark/parts.py (which says
how it measures):

- the grid (``--models``; none skips it): for every batch size and frame
  count, training step, inference clips per second, peak training memory,
  params and FLOPs of TSM-R50, MSNet-R50, both with ``with_cp=True``, and
  the MS module alone, with the ratios MSNet/TSM; eager, or with
  ``--compiled`` under ``torch.compile``;
- onnxruntime on both backbones, or both whole recognizers (``--onnx-graph``;
  ``--no-onnx`` skips it);
- ``torch.compile`` from a cold cache (MotionSqueeze(128), the demo
  recognizer, the TSM-R50 and MSNet-R50 backbones) and ONNX node counts
  (``--no-compile``);
- the correlation kernels alone (``--no-correlation``);
- where the MS module alone spends a training step (``--profile``).

``--autograd`` instead measures each hand-written autograd Function against
its plain alternative, time and peak memory
(msnet_plugin/benchmark/autograd.py).
"""
import argparse
import os
import os.path as osp
import platform
import sys
import time

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
import torch

from msnet_plugin import benchmarking as bench
from msnet_plugin.benchmark import parts
from msnet_plugin.benchmark.autograd import (autograd_markdown,
                                             compare_autograd_functions)
from msnet_plugin.benchmark.report import markdown, ratios
from msnet_plugin.cli import add_debug_argument, tool_main
from msnet_plugin.launch import check_device
from msnet_plugin.models.correlation import resolve_correlation_impl

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The parts after the grid: (report key, whether ``args`` asks for it,
#: the function that measures it). A new measurement is one more row.
PARTS = (
    ('onnx', lambda args: not args.no_onnx, parts.run_onnx),
    ('compile', lambda args: not args.no_compile, parts.run_compile),
    ('correlation', lambda args: not args.no_correlation,
     parts.run_correlation),
    ('profile', lambda args: args.profile, parts.run_profile),
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[1, 8])
    parser.add_argument('--frames', type=int, nargs='+', default=[8, 16])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--warmup', type=int, default=1)
    parser.add_argument('--models', nargs='*', choices=parts.MODELS,
                        default=list(parts.MODELS),
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
        default=[parts.CORRELATION_CASE[key]
                 for key in parts.CORRELATION_KEYS],
        metavar=('PAIRS', 'CHANNELS', 'SIZE', 'MAX_DISP'),
        help='the correlation part\'s maps (default: 56 64 28 7)')
    parser.add_argument('--no-onnx', action='store_true',
                        help='skip the onnxruntime part')
    parser.add_argument('--onnx-frames', type=int, default=8)
    parser.add_argument('--onnx-graph', choices=('backbone', 'recognizer'),
                        default='backbone',
                        help='what the onnxruntime part times: the backbones, '
                        'or the whole recognizers as tools/export.py writes '
                        'them')
    parser.add_argument('--compiled', action='store_true',
                        help='time the grid\'s models with torch.compile '
                        '(inductor) on their backbones (the MS module '
                        'itself), compiled in the warm-up rounds')
    parser.add_argument('--no-compile', action='store_true',
                        help='skip the torch.compile and ONNX-graph part')
    parser.add_argument('--profile', action='store_true',
                        help='add where the MS module alone spends a '
                        'training step (torch.profiler)')
    parser.add_argument('--profile-ops', type=int, default=12,
                        help='ops listed by --profile')
    parser.add_argument('--autograd', action='store_true',
                        help='only compare the hand-written autograd '
                        'Functions with their plain alternatives, --rounds '
                        'rounds; writes OUT_DIR/autograd.md')
    parser.add_argument('--out-dir', default='work_dirs/benchmark')
    parser.set_defaults(
        msnet_config=osp.join(REPO, 'configs', 'msnet_tsm_r50_sthv1.py'),
        demo_config=osp.join(REPO, 'configs', 'msnet_r18_demo_synthetic.py'))
    add_debug_argument(parser)
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


def environment(device: torch.device) -> dict:
    """Where the figures were measured."""
    return dict(
        device=(torch.cuda.get_device_name(device) if device.type == 'cuda'
                else f'{platform.processor() or "cpu"}, '
                f'{os.cpu_count()} cores'),
        torch=torch.__version__, threads=torch.get_num_threads(),
        correlation_impl=resolve_correlation_impl(
            'auto', torch.zeros(1, device=device)),
        load_average=os.getloadavg())


@tool_main
def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    check_device(args.device)
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.autograd:
        result = compare_autograd_functions(
            rounds=args.rounds, device=device, memory=not args.no_memory,
            threads=args.threads)
        bench.write_report(args.out_dir, 'autograd', result,
                           autograd_markdown(result))
        return result
    started = time.time()
    report = dict(
        command='python tools/benchmark.py ' + ' '.join(
            sys.argv[1:] if argv is None else argv),
        rounds=args.rounds, environment=environment(device),
        rows=parts.run_grid(args, device) if args.models else [])
    report['ratios'] = ratios(report['rows'])
    for key, wanted, run in PARTS:
        if wanted(args):
            report[key] = run(args, device)
    report['seconds'] = time.time() - started
    bench.write_report(args.out_dir, 'benchmark', report, markdown(report))
    return report


if __name__ == '__main__':
    main()
