"""The markdown of a tools/benchmark.py report: one writer per part of
:mod:`.parts` (:data:`WRITERS`), and the MSNet/TSM ratios of the grid."""
from ..benchmarking import markdown_table, ratio

LABELS = dict(tsm='TSM-R50', msnet='MSNet-R50', tsm_cp='TSM-R50 with_cp',
              msnet_cp='MSNet-R50 with_cp', ms='MS module alone')
#: (MSNet, TSM) pairs whose ratios the report gives.
PAIRS = (('msnet', 'tsm'), ('msnet_cp', 'tsm_cp'))
#: Figures of a grid row whose MSNet/TSM ratio is given: (ratio name, row
#: key); inference as a time ratio (clips per second inverted).
RATIO_KEYS = (('train_step', 'train_step_s'),
              ('inference_time', 'inference_clips_per_s'),
              ('peak_train_memory', 'peak_train_memory_mb'),
              ('params', 'params'), ('flops', 'flops'))


def ratios(rows: list) -> list:
    """MSNet/TSM for every pair of :data:`PAIRS` and (batch, frames) where
    both were measured (None where a figure was not measured)."""
    keyed = {(r['model'], r['batch'], r['frames']): r for r in rows}
    out = []
    for (model, batch, frames), ms_row in keyed.items():
        for msnet, tsm in PAIRS:
            tsm_row = keyed.get((tsm, batch, frames))
            if model != msnet or tsm_row is None:
                continue
            pair = dict(pair=f'{msnet}/{tsm}', batch=batch, frames=frames)
            for name, key in RATIO_KEYS:
                ms_value, tsm_value = ms_row[key], tsm_row[key]
                if name == 'inference_time':
                    ms_value, tsm_value = tsm_value, ms_value
                pair[name] = (None if ms_value is None else
                              ratio(ms_value, tsm_value))
            out.append(pair)
    return out


def fmt(value, digits=3) -> str:
    return 'n/a' if value is None else f'{value:.{digits}f}'


def grid_markdown(rows: list) -> list:
    lines = markdown_table(
        ('model', 'batch', 'frames', 'train step (s)', 'inference (clips/s)',
         'peak train memory (MiB)', 'params (M)', 'FLOPs/clip (G)'),
        ((LABELS[r['model']], r['batch'], r['frames'],
          fmt(r['train_step_s']), fmt(r['inference_clips_per_s']),
          fmt(r['peak_train_memory_mb'], 0), f'{r["params"] / 1e6:.3f}',
          f'{r["flops"] / 1e9:.3f}') for r in rows))
    pairs = ratios(rows)
    if pairs:
        lines += [''] + markdown_table(
            ('ratio', 'batch', 'frames', 'train step', 'inference time',
             'peak train memory', 'params', 'FLOPs'),
            ((' / '.join(LABELS[m] for m in r['pair'].split('/')),
              r['batch'], r['frames'],
              *(fmt(r[name]) for name, _ in RATIO_KEYS)) for r in pairs))
    return lines


def onnx_markdown(onnx: dict) -> list:
    tsm, msnet = onnx['tsm']['seconds'], onnx['msnet']['seconds']
    graph = onnx['graph']
    shape = (f'(1, {onnx["frames"]}, 3, {onnx["size"]}, {onnx["size"]}) '
             'pixels' if graph == 'recognizer' else
             f'({onnx["frames"]}, 3, {onnx["size"]}, {onnx["size"]})')
    return [
        f'onnxruntime, {graph}s on {shape}, {onnx["threads"]} threads:', ''
    ] + markdown_table((graph, 's/call'),
                       (('TSM-R50', fmt(tsm)), ('MSNet-R50', fmt(msnet)),
                        ('MSNet/TSM', fmt(ratio(msnet, tsm)))))


def compile_markdown(compiled: dict) -> list:
    ms, demo = compiled['ms_compile'], compiled['demo_compile']
    nodes = 'MotionSqueeze(128) ONNX nodes, {} exporter'
    return [
        'torch.compile from a cold cache (first call, inference) and ONNX '
        'graphs:', ''
    ] + markdown_table(('what', 'figure'), (
        ('MotionSqueeze(128) on (8, 128, 8, 8), first call',
         f'{fmt(ms["first_call_s"], 1)} s'),
        ('demo recognizer (1 clip, 8 x 64 px), first call',
         f'{fmt(demo["first_call_s"], 1)} s'),
        *r50_compile_rows(compiled),
        (nodes.format('TorchScript'),
         compiled['ms_onnx_torchscript']['nodes']),
        (nodes.format('dynamo'), compiled['ms_onnx_dynamo']['nodes'])))


def r50_compile_rows(compiled: dict) -> list:
    """The R50 backbones' first calls and their MSNet/TSM ratio."""
    tsm, msnet = (compiled[f'{name}_compile']['first_call_s']
                  for name in ('tsm', 'msnet'))
    what = '{} backbone (eval, 8 x 64 px), first call'
    return [(what.format('TSM-R50'), f'{fmt(tsm, 1)} s'),
            (what.format('MSNet-R50'), f'{fmt(msnet, 1)} s'),
            ('first call MSNet-R50 / TSM-R50', fmt(ratio(msnet, tsm)))]


def correlation_markdown(corr: dict) -> list:
    case, fast = corr['case'], corr['fast']

    def row(impl):
        figures = corr[impl]
        memory = figures['peak_memory_mb']
        return (impl, fmt(figures['fwd_bwd_s']), fmt(memory, 0),
                fmt(ratio(figures['fwd_bwd_s'], fast['fwd_bwd_s'])),
                fmt(None if memory is None else
                    ratio(memory, fast['peak_memory_mb'])))

    return [
        f'Correlation forward+backward, B={case["batch"]}, '
        f'C={case["channels"]}, {case["size"]}x{case["size"]}, '
        f'd={case["max_disp"]}:', ''
    ] + markdown_table(('kernel', 'time (s)', 'peak memory (MiB)',
                        'time / fast', 'memory / fast'),
                       map(row, corr['kernels']))


def profile_markdown(profile: dict) -> list:
    return [
        f'Where a training step of the MS module alone goes, '
        f'{tuple(profile["shape"])}, {profile["steps"]} steps profiled, '
        f'{profile["step_ms"]:.1f} ms of op self time per step:', ''
    ] + markdown_table(
        ('op', 'share of self time', 'calls per step'),
        ((op['op'], f'{op["share"]:.1%}', f'{op["calls_per_step"]:g}')
         for op in profile['ops']))


#: The writer of each part's table, in the report's order.
WRITERS = dict(rows=grid_markdown, onnx=onnx_markdown,
               compile=compile_markdown, correlation=correlation_markdown,
               profile=profile_markdown)


def markdown(report: dict) -> str:
    """The whole report: its environment line, then each part's table."""
    env = report['environment']
    lines = [
        f'Device: {env["device"]}, torch {env["torch"]}, '
        f'{env["threads"]} threads, correlation kernel '
        f'{env["correlation_impl"]!r}; medians of {report["rounds"]} '
        f'alternating rounds; {report["command"]}'
    ]
    for part, writer in WRITERS.items():
        if report.get(part):
            lines += [''] + writer(report[part])
    return '\n'.join(lines) + '\n'
