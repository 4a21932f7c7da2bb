"""The markdown of a tools/benchmark.py report: one writer per part of
:mod:`.parts`, and the MSNet/TSM ratios of the grid."""
from ..benchmarking import ratio

LABELS = dict(tsm='TSM-R50', msnet='MSNet-R50', tsm_cp='TSM-R50 with_cp',
              msnet_cp='MSNet-R50 with_cp', ms='MS module alone')
#: (MSNet, TSM) pairs whose ratios the report gives.
PAIRS = (('msnet', 'tsm'), ('msnet_cp', 'tsm_cp'))


def ratios(rows: list) -> list:
    """MSNet/TSM for every pair of :data:`PAIRS` and (batch, frames) where
    both were measured; inference as a time ratio."""
    out = []
    keyed = {(r['model'], r['batch'], r['frames']): r for r in rows}
    for (model, batch, frames), ms_row in keyed.items():
        for msnet, tsm in PAIRS:
            tsm_row = keyed.get((tsm, batch, frames))
            if model != msnet or tsm_row is None:
                continue
            memory = None
            if ms_row['peak_train_memory_mb'] is not None:
                memory = ratio(ms_row['peak_train_memory_mb'],
                               tsm_row['peak_train_memory_mb'])
            out.append(dict(
                pair=f'{msnet}/{tsm}', batch=batch, frames=frames,
                train_step=ratio(ms_row['train_step_s'],
                                 tsm_row['train_step_s']),
                inference_time=ratio(tsm_row['inference_clips_per_s'],
                                     ms_row['inference_clips_per_s']),
                peak_train_memory=memory,
                params=ratio(ms_row['params'], tsm_row['params']),
                flops=ratio(ms_row['flops'], tsm_row['flops'])))
    return out


def fmt(value, digits=3) -> str:
    return 'n/a' if value is None else f'{value:.{digits}f}'


def grid_markdown(rows: list) -> list:
    lines = [
        '| model | batch | frames | train step (s) | inference (clips/s) '
        '| peak train memory (MiB) | params (M) | FLOPs/clip (G) |',
        '|---|---|---|---|---|---|---|---|'
    ]
    for row in rows:
        lines.append(
            f'| {LABELS[row["model"]]} | {row["batch"]} | {row["frames"]} '
            f'| {fmt(row["train_step_s"])} '
            f'| {fmt(row["inference_clips_per_s"])} '
            f'| {fmt(row["peak_train_memory_mb"], 0)} '
            f'| {row["params"] / 1e6:.3f} | {row["flops"] / 1e9:.3f} |')
    pairs = ratios(rows)
    if pairs:
        lines += [
            '', '| ratio | batch | frames | train step | inference time '
            '| peak train memory | params | FLOPs |',
            '|---|---|---|---|---|---|---|---|'
        ]
        for r in pairs:
            msnet, tsm = r['pair'].split('/')
            lines.append(
                f'| {LABELS[msnet]} / {LABELS[tsm]} | {r["batch"]} '
                f'| {r["frames"]} | {fmt(r["train_step"])} '
                f'| {fmt(r["inference_time"])} '
                f'| {fmt(r["peak_train_memory"])} | {fmt(r["params"])} '
                f'| {fmt(r["flops"])} |')
    return lines


def onnx_markdown(onnx: dict) -> list:
    tsm, msnet = onnx['tsm']['seconds'], onnx['msnet']['seconds']
    return [
        f'onnxruntime, backbones on ({onnx["frames"]}, 3, {onnx["size"]}, '
        f'{onnx["size"]}), {onnx["threads"]} threads:', '',
        '| backbone | s/call |', '|---|---|',
        f'| TSM-R50 | {fmt(tsm)} |', f'| MSNet-R50 | {fmt(msnet)} |',
        f'| MSNet/TSM | {fmt(ratio(msnet, tsm))} |'
    ]


def compile_markdown(compiled: dict) -> list:
    ms, demo = compiled['ms_compile'], compiled['demo_compile']
    return [
        'torch.compile from a cold cache (first call, inference) and ONNX '
        'graphs:', '', '| what | figure |', '|---|---|',
        f'| MotionSqueeze(128) on (8, 128, 8, 8), first call | '
        f'{fmt(ms["first_call_s"], 1)} s |',
        f'| demo recognizer (1 clip, 8 x 64 px), first call | '
        f'{fmt(demo["first_call_s"], 1)} s |',
        f'| MotionSqueeze(128) ONNX nodes, TorchScript exporter | '
        f'{compiled["ms_onnx_torchscript"]["nodes"]} |',
        f'| MotionSqueeze(128) ONNX nodes, dynamo exporter | '
        f'{compiled["ms_onnx_dynamo"]["nodes"]} |'
    ]


def correlation_markdown(corr: dict) -> list:
    case, fast = corr['case'], corr['fast']
    lines = [
        f'Correlation forward+backward, B={case["batch"]}, '
        f'C={case["channels"]}, {case["size"]}x{case["size"]}, '
        f'd={case["max_disp"]}:', '',
        '| kernel | time (s) | peak memory (MiB) | time / fast | memory / '
        'fast |', '|---|---|---|---|---|'
    ]
    for impl in corr['kernels']:
        row = corr[impl]
        memory_ratio = (None if row['peak_memory_mb'] is None else
                        ratio(row['peak_memory_mb'], fast['peak_memory_mb']))
        lines.append(
            f'| {impl} | {fmt(row["fwd_bwd_s"])} '
            f'| {fmt(row["peak_memory_mb"], 0)} '
            f'| {fmt(ratio(row["fwd_bwd_s"], fast["fwd_bwd_s"]))} '
            f'| {fmt(memory_ratio)} |')
    return lines


def profile_markdown(profile: dict) -> list:
    lines = [
        f'Where a training step of the MS module alone goes, '
        f'{tuple(profile["shape"])}, {profile["steps"]} steps profiled, '
        f'{profile["step_ms"]:.1f} ms of op self time per step:', '',
        '| op | share of self time | calls per step |', '|---|---|---|'
    ]
    return lines + [
        f'| {op["op"]} | {op["share"]:.1%} | {op["calls_per_step"]:g} |'
        for op in profile['ops']
    ]


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
