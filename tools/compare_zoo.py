"""MSNet beside MMAction2's model zoo: accuracy as published, cost as measured.

For Something-Something V1/V2 and Kinetics-400, reads the ResNet-50 entries
of TSM, TSN, TANet, TIN, TPN and TRN from the metafiles that ship with
MMAction2 (``mmaction/.mim/configs/recognition/<arch>/metafile.yml``): top-1
and top-5 as published, and the zoo's own FLOPs/params. Then builds every
entry's config (no pretrained weights) and MSNet-R50 (our config, with the
dataset's classes and frames) and measures, with the same counter for all
(mmengine's, plus the correlation handle; msnet_plugin/flops.py), params and
FLOPs of one clip of the training sampling at 224x224, and CPU inference
time (batch 1, medians of alternating rounds, msnet_plugin/benchmarking.py).
MSNet's accuracies are the paper's (Kwon et al., ECCV 2020, Table 1; * = not
confirmed against the paper's table).

A zoo model that cannot be built here is listed with the reason (e.g.
mmcv-lite has no compiled ops).

Usage: python tools/compare_zoo.py [--rounds 3] [--no-timing]
       [--datasets sthv1 sthv2 kinetics400] [--out-dir DIR]
Writes DIR/compare_zoo.md and DIR/compare_zoo.json
(default work_dirs/compare_zoo).
"""
import argparse
import os.path as osp

import msnet_plugin  # noqa: F401  (registers the plugin's classes)
import mmaction
import torch
import yaml
from mmengine.config import Config

from msnet_plugin import benchmarking as bench
from msnet_plugin.flops import (build_recognizer, model_complexity,  # noqa
                                recognizer_input_shape)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ZOO = osp.join(osp.dirname(mmaction.__file__), '.mim', 'configs')
ARCHS = ('tsm', 'tsn', 'tanet', 'tin', 'tpn', 'trn')
DATASETS = dict(sthv1=('_sthv1-rgb', 'Sth-V1', 174),
                sthv2=('_sthv2-rgb', 'Sth-V2', 174),
                kinetics400=('_kinetics400-rgb', 'Kinetics-400', 400))
MSNET_CONFIG = osp.join(REPO, 'configs', 'msnet_tsm_r50_sthv1.py')
#: The paper's MSNet-R50 results (Kwon et al., ECCV 2020): (frames, top-1, top-5).
MSNET_PAPER = dict(
    sthv1=[(8, '50.9*', '80.3*'), (16, '52.1', '82.3*')],
    sthv2=[(8, '63.0', '88.4'), (16, '64.7', '89.4')],
    kinetics400=[(16, '76.4', '-')])


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--datasets', nargs='+', choices=list(DATASETS),
                        default=list(DATASETS))
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--no-timing', action='store_true')
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--out-dir', default='work_dirs/compare_zoo')
    return parser.parse_args(argv)


def dataset_of(name: str):
    """The dataset key of a zoo entry, from its name's suffix (the
    metafiles' ``Dataset`` field is wrong for some entries)."""
    for key, (suffix, _, _) in DATASETS.items():
        if name.endswith(suffix):
            return key
    return None


def zoo_entries(datasets) -> list:
    """ResNet-50 zoo entries of ARCHS on ``datasets``, as published."""
    entries = []
    for arch in ARCHS:
        with open(osp.join(ZOO, 'recognition', arch, 'metafile.yml')) as f:
            meta = yaml.safe_load(f)
        for model in meta['Models']:
            name = model['Name']
            dataset = dataset_of(name)
            if dataset not in datasets or 'r50' not in name:
                continue
            results = model['Results']
            metrics = (results[0] if isinstance(results, list) else
                       results)['Metrics']
            config = model['Config']
            if not config.endswith('.py'):
                config += '.py'
            entries.append(
                dict(arch=arch.upper(), name=name, dataset=dataset,
                     config=osp.join(ZOO, config.split('configs/', 1)[1]),
                     top1=metrics.get('Top 1 Accuracy'),
                     top5=metrics.get('Top 5 Accuracy'),
                     zoo_flops=str(model['Metadata'].get('FLOPs')),
                     zoo_params=str(model['Metadata'].get('Parameters'))))
    return entries


def train_frames(cfg) -> int:
    """Frames of one training clip: clip_len x num_clips of SampleFrames."""
    for step in cfg.train_pipeline:
        if step['type'] in ('SampleFrames', 'DenseSampleFrames',
                            'UniformSample'):
            return step.get('clip_len', 1) * step.get('num_clips', 1)
    raise ValueError('no frame sampling step in train_pipeline')


def msnet_entries(datasets) -> list:
    entries = []
    for dataset in datasets:
        for frames, top1, top5 in MSNET_PAPER[dataset]:
            entries.append(
                dict(arch='MSNet (ours)', name=f'msnet_tsm_r50_{frames}f',
                     dataset=dataset, config=MSNET_CONFIG, frames=frames,
                     top1=top1, top5=top5, zoo_flops='-', zoo_params='-'))
    return entries


def build_entry(entry: dict, size: int):
    """Build the entry's model; return (model, input shape) or raise."""
    cfg = Config.fromfile(entry['config'])
    backbone = cfg.model.get('backbone', {})
    if 'pretrained' in backbone:
        backbone['pretrained'] = None
    if entry['arch'] == 'MSNet (ours)':
        cfg.model.cls_head.num_classes = DATASETS[entry['dataset']][2]
    else:
        entry['frames'] = train_frames(cfg)
    model = build_recognizer(cfg, entry['frames'])
    return model, recognizer_input_shape(model, entry['frames'], size, size)


def measure(entries: list, args) -> None:
    models = {}
    for entry in entries:
        print(f'# {entry["name"]}', flush=True)
        try:
            model, shape = build_entry(entry, args.size)
            entry.update(model_complexity(model, shape))
            models[entry['name']] = (model, shape)
        except Exception as exc:  # reported in the table, not hidden
            entry['error'] = f'{type(exc).__name__}: {exc}'.split('\n')[0]
            print(f'  not built: {entry["error"]}', flush=True)
    if args.no_timing or not models:
        return
    callables = {}
    for name, (model, shape) in models.items():
        data = bench.recognizer_batch(model, 1, 1, args.size, 2)
        data['inputs'] = [torch.randint(0, 256, shape[1:],
                                        dtype=torch.uint8)]
        callables[name] = bench.recognizer_steps(model, data)['infer']
    print('# timing', flush=True)
    times = bench.alternating_medians(callables, args.rounds, 1)
    for entry in entries:
        if entry['name'] in times:
            entry['inference_s'] = times[entry['name']]['median']


def markdown(entries: list, args) -> str:
    lines = [
        f'Measured here: params, FLOPs (G, one clip of the training '
        f'sampling at {args.size}x{args.size}, mmengine counter with the '
        f'correlation handle) and ' +
        ('no inference time (--no-timing)' if args.no_timing else
         f'CPU inference seconds per clip (batch 1, median of {args.rounds} '
         f'alternating rounds, {torch.get_num_threads()} threads)') +
        '. Published: top-1/top-5 and the zoo\'s FLOPs/params.', '',
    ]

    def row(entry):
        if 'error' in entry:
            cost = (f'not built: {entry["error"]}', '')
        else:
            cost = (f'{entry["flops"] / 1e9:.2f}',
                    f'{entry["params"] / 1e6:.2f}')
        seconds = entry.get('inference_s')
        return (DATASETS[entry['dataset']][1], entry['arch'],
                entry.get('frames', '?'), entry['top1'], entry['top5'], *cost,
                f'{entry["zoo_flops"]} / {entry["zoo_params"]}',
                '-' if seconds is None else f'{seconds:.2f}', entry['name'])

    lines += bench.markdown_table(
        ('data', 'model', 'frames', 'top-1', 'top-5', 'FLOPs (G)',
         'params (M)', 'zoo FLOPs / params', 'inference (s/clip)', 'config'),
        map(row, entries))
    return '\n'.join(lines) + '\n'


def main(argv=None):
    args = parse_args(argv)
    entries = []
    for dataset in args.datasets:
        entries += msnet_entries([dataset])
        entries += zoo_entries([dataset])
    measure(entries, args)
    bench.write_report(args.out_dir, 'compare_zoo', entries,
                       markdown(entries, args))
    return entries


if __name__ == '__main__':
    main()
