"""Export an MSNet recognizer (frames -> class scores) to ONNX or TorchScript.

Usage:
    python tools/export.py CONFIG CHECKPOINT [--format onnx|torchscript]
        [--num-segments T] [--shape H W] [--output FILE]
        [--exporter torchscript|dynamo] [--opset N]
        [--benchmark [--batch-size N] [--repeats R]]
        [--cfg-options k=v ...] [--debug]

The exported graph is the whole recognizer: the data preprocessor's
normalisation, the backbone with MotionSqueeze, the neck, the head and its
consensus/averaging: (N, T, 3, H, W) float frames with pixel values as the
test pipeline gives them -> (N, num_classes) scores, N dynamic. After the
export the file is run on two batch sizes (onnxruntime on CPU, or the loaded
TorchScript module) and compared with PyTorch; the tool fails if any score
differs by more than --atol (exit status 1; a mistake in the arguments or
the config exits with 2, see msnet_plugin/cli.py). ``--benchmark`` then
times eager PyTorch, ``torch.compile`` (CPU inductor; needs a C++ compiler) and onnxruntime on
the same input in this process.

MotionSqueeze's correlation and soft-argmax export as plain ops whatever its
``correlation_impl`` (exporters get the plain formulation), so no switch is
needed for them.
"""
import argparse
import os
import os.path as osp
import warnings

import torch
from mmengine.config import DictAction

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
from msnet_plugin.checkpoints import check_checkpoint_file
from msnet_plugin.cli import ToolStopped, add_debug_argument, tool_main
from msnet_plugin.deploy import (build_frames_to_scores,
                                 compare_inference_speed, export_onnx,
                                 nonstandard_onnx_ops, onnxruntime_scores)
from msnet_plugin.deploy.frames_to_scores import example_frames
from msnet_plugin.deploy.onnx_export import EXPORTERS

#: Exit status when the written file fails its check (it differs from
#: PyTorch, or uses non-standard operators): the export is wrong, not the
#: user's input (a mistake of the user's exits with 2, msnet_plugin/cli.py).
EXIT_CHECK_FAILED = 1
#: Batch size of the example input the export traces. Not 1: torch.export
#: takes a dimension of size 1 for a constant.
EXPORT_BATCH_SIZE = 2
#: Batch sizes the export is checked on, both other than the traced one, so
#: the check also shows that the batch axis is dynamic.
CHECK_BATCH_SIZES = (1, 3)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export an MSNet recognizer to ONNX or TorchScript')
    parser.add_argument('config', help='config file of a Recognizer2D')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--format', choices=('onnx', 'torchscript'),
                        default='onnx', help='what to write')
    parser.add_argument(
        '--num-segments', type=int,
        help="frames per clip; must be the config's model.backbone."
        'num_segments (default: that value)')
    parser.add_argument('--shape', type=int, nargs=2, default=(224, 224),
                        metavar=('H', 'W'),
                        help='frame height and width (fixed in the graph)')
    parser.add_argument(
        '--output', help='file to write (default: work_dirs/<config>/'
        '<config>_T<T>_<H>x<W>.onnx or .pt)')
    parser.add_argument(
        '--exporter', choices=EXPORTERS, default='torchscript',
        help="ONNX exporter: torch.onnx.export's TorchScript-based one "
        '(dynamo=False, fast) or the dynamo one (dynamo=True)')
    parser.add_argument('--opset', type=int, help='ONNX opset version')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest score difference the check accepts')
    parser.add_argument(
        '--benchmark', action='store_true',
        help='time eager vs torch.compile vs onnxruntime after exporting')
    parser.add_argument('--batch-size', type=int, default=1,
                        help='clips per call in --benchmark')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed calls per way in --benchmark')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value pairs')
    add_debug_argument(parser)
    return parser.parse_args(argv)


def default_output(args, num_segments):
    name = osp.splitext(osp.basename(args.config))[0]
    height, width = args.shape
    extension = '.onnx' if args.format == 'onnx' else '.pt'
    return osp.join('work_dirs', name,
                    f'{name}_T{num_segments}_{height}x{width}{extension}')


def export_torchscript(module, frames, path):
    """Trace ``module`` at ``frames`` and save it; returns the loaded copy."""
    # While tracing, MotionSqueeze runs plain ops (torch.jit.trace cannot
    # record its eager autograd Functions).
    with torch.no_grad(), warnings.catch_warnings():
        # Shape checks read in Python become constants in the trace; they
        # hold for every batch size.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.simplefilter('ignore', DeprecationWarning)
        warnings.simplefilter('ignore', FutureWarning)
        traced = torch.jit.trace(module, (frames, ), check_trace=False)
        torch.jit.save(traced, path)
        return torch.jit.load(path)


def check_export(module, run_export, num_segments, shape, atol):
    """Compare the export with PyTorch on each of CHECK_BATCH_SIZES."""
    worst = 0.0
    for seed, batch_size in enumerate(CHECK_BATCH_SIZES, start=1):
        frames = example_frames(num_segments, shape, batch_size, seed=seed)
        with torch.no_grad():
            expected = module(frames)
            try:
                exported = run_export(frames)
            except Exception as error:  # onnxruntime's or TorchScript's
                raise ToolStopped(
                    f'the export fails on a batch of {batch_size} '
                    f'({type(error).__name__}: {error})',
                    EXIT_CHECK_FAILED) from error
        if exported.shape != expected.shape:
            raise ToolStopped(
                f'the export returned scores of shape {tuple(exported.shape)}'
                f' for a batch of {batch_size}, PyTorch '
                f'{tuple(expected.shape)}', EXIT_CHECK_FAILED)
        difference = (exported - expected).abs().max().item()
        print(f'check: batch {batch_size}, scores {tuple(expected.shape)}, '
              f'max |export - PyTorch| = {difference:.2e}')
        worst = max(worst, difference)
    if worst > atol:
        raise ToolStopped(f'the export differs from PyTorch by {worst:.2e} > '
                          f'--atol {atol}', EXIT_CHECK_FAILED)
    return worst


def print_speeds(results, frames):
    print(f'inference speed, CPU, {torch.get_num_threads()} threads, input '
          f'{tuple(frames.shape)} (median of the timed calls):')
    print(f'{"way":<12} {"ms/call":>9} {"vs eager":>9} {"max|diff|":>10}')
    for way, result in results.items():
        print(f'{way:<12} {result["seconds"] * 1000:9.1f} '
              f'{result["speedup"]:8.2f}x {result["max_abs_diff"]:10.1e}')
    print(f'torch.compile first call (compiling): '
          f'{results["compiled"]["first_call_s"]:.1f} s')


@tool_main
def main(argv=None):
    args = parse_args(argv)
    check_checkpoint_file(args.checkpoint, config=args.config)
    module = build_frames_to_scores(args.config, args.checkpoint,
                                    args.num_segments, args.cfg_options)
    num_segments = module.num_segments
    output = args.output or default_output(args, num_segments)
    os.makedirs(osp.dirname(osp.abspath(output)), exist_ok=True)
    frames = example_frames(num_segments, args.shape, EXPORT_BATCH_SIZE)

    if args.format == 'onnx':
        export_onnx(module, frames, output, args.exporter, args.opset)
        foreign = nonstandard_onnx_ops(output)
        if foreign:
            raise ToolStopped(f'{output} uses non-standard ONNX '
                              f'operators: {", ".join(foreign)}',
                              EXIT_CHECK_FAILED)
        print(f'exported {output} ({args.exporter} exporter): standard '
              'ONNX operators only, dynamic batch axis')
        check_export(module, lambda x: onnxruntime_scores(output, x),
                     num_segments, args.shape, args.atol)
    else:
        loaded = export_torchscript(module, frames, output)
        print(f'exported {output} (TorchScript, traced)')
        check_export(module, loaded, num_segments, args.shape, args.atol)

    if args.benchmark:
        frames = example_frames(num_segments, args.shape, args.batch_size)
        results = compare_inference_speed(
            module, frames, output if args.format == 'onnx' else None,
            args.repeats)
        print_speeds(results, frames)
    return output


if __name__ == '__main__':
    main()
