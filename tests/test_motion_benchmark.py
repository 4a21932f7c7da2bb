"""tools/motion_benchmark.py and msnet_plugin/benchmark/motion*.py:
aggregation over seeds, reuse, reproducibility.

The fast tests feed synthetic curves to the aggregation and to ``main`` (with
training replaced by a stand-in), the slow ones train for real: a reduced
two-seed run checks the outputs against its own runs and that a run repeats
exactly; the accuracy test checks that MSNet learns motion TSN cannot see
(measured with its settings, seed 0, 32 validation clips, chance 0.25: MSNet
0.91 top-1 after 60 iterations, TSN 0.34; the thresholds MSNet >= 0.7, TSN
<= 0.45 leave a margin on both sides).
"""
import json
import random

import numpy as np
import pytest
import torch

from msnet_plugin.benchmark import motion, motion_report

TINY = ['--num-segments', '4', '--size', '32', '--speed', '8',
        '--iters', '4', '--val-interval', '2', '--train-videos', '16',
        '--val-videos', '8']


def synthetic_run(model, seed, curve, top5=1.0):
    return dict(model=model, seed=seed, top1=curve[-1][1], top5=top5,
                val_top1_curve=[list(point) for point in curve])


@pytest.fixture
def tool(load_tool):
    return load_tool('motion_benchmark')


def test_iterations_to_reach_is_the_first_validation_at_the_target():
    curve = [[20, 0.5], [40, 0.9], [60, 0.85], [80, 0.95]]
    assert motion_report.iterations_to_reach(curve) == 40
    assert motion_report.iterations_to_reach(curve, target=0.91) == 80
    assert motion_report.iterations_to_reach(curve, target=0.96) is None


def test_summary_means_and_ranges_over_seeds():
    runs = [
        synthetic_run('msnet', 0, [[20, 0.5], [40, 0.9], [60, 1.0]]),
        synthetic_run('msnet', 1, [[20, 0.25], [40, 0.75], [60, 0.95]],
                      top5=0.5),
        synthetic_run('msnet', 2, [[20, 0.5], [40, 0.5], [60, 0.9]]),
    ]
    summary = motion_report.summarize_runs(runs)
    assert summary['seeds'] == [0, 1, 2]
    assert summary['top1_mean'] == pytest.approx((1.0 + 0.95 + 0.9) / 3)
    assert (summary['top1_min'], summary['top1_max']) == (0.9, 1.0)
    assert summary['top5_mean'] == pytest.approx(2.5 / 3)
    assert summary['iters_to_target'] == [40, 60, 60]
    assert summary['reached'] == 3
    assert summary['iters_mean'] == pytest.approx(160 / 3)
    assert (summary['iters_min'], summary['iters_max']) == (40, 60)
    assert summary['curve_iters'] == [20, 40, 60]
    assert summary['curve_mean'] == pytest.approx(
        [1.25 / 3, 2.15 / 3, 2.85 / 3])
    assert summary['curve_min'] == [0.25, 0.5, 0.9]
    assert summary['curve_max'] == [0.5, 0.9, 1.0]
    assert motion_report.format_top1(summary) == '0.950 (0.900-1.000)'
    assert motion_report.format_iters(summary) == '53 (40-60)'


def test_a_seed_that_never_reaches_the_target_has_no_mean():
    reached = synthetic_run('tsm', 0, [[20, 0.5], [40, 0.95]])
    missed = synthetic_run('tsm', 1, [[20, 0.5], [40, 0.8]])
    partial = motion_report.summarize_runs([reached, missed])
    assert partial['iters_to_target'] == [40, None]
    assert partial['reached'] == 1 and partial['iters_mean'] is None
    assert (partial['iters_min'], partial['iters_max']) == (40, 40)
    assert motion_report.format_iters(partial) == (
        'not reached in 1 of 2 seeds (40-40 in the others)')
    nobody = motion_report.summarize_runs([missed])
    assert nobody['reached'] == 0 and nobody['iters_min'] is None
    assert motion_report.format_iters(nobody) == 'not reached (1 of 1 seeds)'


def test_curves_validated_at_other_iterations_are_refused():
    runs = [synthetic_run('tsn', 0, [[20, 0.3], [40, 0.3]]),
            synthetic_run('tsn', 1, [[40, 0.3]])]
    with pytest.raises(ValueError, match='seed 1 was validated at'):
        motion_report.summarize_runs(runs)


def test_validation_does_not_consume_the_training_random_stream():
    hook = motion.ValCurveHook()
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    expected = (torch.rand(4), np.random.rand(2), random.random())
    torch.manual_seed(3), np.random.seed(3), random.seed(3)
    hook.before_val(runner=None)
    torch.rand(7), np.random.rand(5), random.random()  # validation's draws
    hook.after_val(runner=None)
    drawn = (torch.rand(4), np.random.rand(2), random.random())
    assert torch.equal(drawn[0], expected[0])
    assert np.array_equal(drawn[1], expected[1])
    assert drawn[2] == expected[2]


def fake_training(monkeypatch):
    """Replace training and FLOP counting by stand-ins; returns the list of
    (model, seed) trained. Seed s of any model climbs to 0.5 + 0.2 s."""
    trained = []

    def train_run(args, model_name, seed):
        trained.append((model_name, seed))
        final = 0.5 + 0.2 * seed
        run = synthetic_run(model_name, seed, [[2, 0.25], [4, final]])
        run.update(train_loss=[1.0] * args.iters, seconds_per_iter=0.1,
                   train_wall_seconds=1.0,
                   settings=motion.benchmark_settings(args))
        return run

    monkeypatch.setattr(motion, 'train_run', train_run)
    # Plots are slow on a loaded CPU: one test draws one for real.
    monkeypatch.setattr(motion_report, 'plot_curves',
                        lambda models, path, args:
                        open(path, 'w').write(
                            ' '.join(m['model'] for m in models)))
    monkeypatch.setattr(
        motion, 'model_cost', lambda args, name: dict(
            params=1000 + len(name), flops=2 * 10**9, correlation_flops=0))
    return trained


def test_finished_seeds_are_reused_and_outputs_hold_the_summary(
        tool, monkeypatch, tmp_path):
    trained = fake_training(monkeypatch)
    out = tmp_path / 'bench'
    common = ['--out-dir', str(out), '--data-root', str(tmp_path), *TINY]
    tool.main(['--models', 'tsn', 'msnet', '--seeds', '2', *common])
    assert trained == [('tsn', 0), ('tsn', 1), ('msnet', 0), ('msnet', 1)]
    # One more seed: only seed 2 trains; the other models' runs stay.
    tool.main(['--models', 'msnet', '--seeds', '3', *common])
    assert trained[4:] == [('msnet', 2)]
    report = json.loads((out / 'results.json').read_text())
    assert report['seeds'] == [0, 1, 2] and report['target_top1'] == 0.9
    assert [(r['model'], r['seed']) for r in report['runs']] == [
        ('tsn', 0), ('tsn', 1), ('msnet', 0), ('msnet', 1), ('msnet', 2)]
    msnet = {m['model']: m for m in report['models']}['msnet']
    assert msnet['params'] == 1005 and msnet['flops'] == 2 * 10**9
    summary = msnet['summary']
    assert summary['top1_mean'] == pytest.approx(0.7)  # 0.5, 0.7, 0.9
    assert (summary['top1_min'], summary['top1_max']) == (0.5, 0.9)
    assert summary['iters_to_target'] == [None, None, 4]
    table = (out / 'results.md').read_text()
    assert ('| MSNet (TSM + MS after layer2) | 3 | 0.700 (0.500-0.900) | '
            'not reached in 2 of 3 seeds (4-4 in the others) | 0.25 0.70 | '
            '1,005 | 2.000 |') in table
    # TSN has 2 of the 3 seeds: its row says so.
    assert '| TSN (ResNetTSM, no shift) | 2 | 0.600 (0.500-0.700) |' in table
    assert (out / 'top1_vs_iteration.png').read_text() == 'tsn msnet'

    # --force retrains; runs made with other settings are not overwritten.
    tool.main(['--models', 'tsn', '--seeds', '1', '--force', *common])
    assert trained[5:] == [('tsn', 0)]
    written = (out / 'results.json').read_text()
    with pytest.raises(SystemExit, match='other settings .*differ in: lr'):
        tool.main(['--models', 'tsn', *common, '--lr', '0.01'])
    assert trained[6:] == []
    assert (out / 'results.json').read_text() == written


def test_the_plot_draws_mean_and_band_per_model(tool, tmp_path):
    runs = [synthetic_run('tsm', seed, [[20, 0.25], [40, 0.5 + 0.1 * seed]])
            for seed in (0, 1)]
    models = [dict(model='tsm', description='TSM',
                   summary=motion_report.summarize_runs(runs))]
    path = tmp_path / 'plot.png'
    motion_report.plot_curves(models, str(path),
                      tool.parse_args(['--seeds', '2', *TINY]))
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert path.stat().st_size > 10000


def test_collect_merges_runs_with_the_same_settings_only(
        tool, monkeypatch, tmp_path):
    fake_training(monkeypatch)
    common = ['--data-root', str(tmp_path), '--seeds', '2', *TINY]
    tool.main(['--models', 'tsn', '--out-dir', str(tmp_path / 'a'),
                *common])
    tool.main(['--models', 'msnet', '--out-dir', str(tmp_path / 'b'),
                *common])
    merged = tmp_path / 'merged'
    tool.main(['--collect', str(tmp_path / 'a'), str(tmp_path / 'b'),
                '--out-dir', str(merged), *common])
    report = json.loads((merged / 'results.json').read_text())
    assert [m['model'] for m in report['models']] == ['tsn', 'msnet']
    assert len(report['runs']) == 4
    # Collecting an out-dir into itself redraws it and loses nothing.
    (merged / 'results.md').unlink()
    tool.main(['--collect', str(merged), '--out-dir', str(merged), *common])
    assert json.loads((merged / 'results.json').read_text()) == report
    assert '| MSNet (TSM + MS after layer2) | 2 |' in (
        merged / 'results.md').read_text()
    with pytest.raises(SystemExit, match='other settings .*differ in: lr'):
        tool.main(['--collect', str(tmp_path / 'a'), '--out-dir',
                   str(merged), *common, '--lr', '0.1'])


def test_a_foreign_results_file_is_named_not_overwritten(tool, tmp_path):
    (tmp_path / 'results.json').write_text('{"results": []}')
    with pytest.raises(SystemExit, match='is not a results.json of this'):
        tool.main(['--out-dir', str(tmp_path), *TINY])
    assert (tmp_path / 'results.json').read_text() == '{"results": []}'


@pytest.mark.parametrize('args,message', [
    (['--iters', '50', '--val-interval', '20'], 'multiple of --val-interval'),
    (['--iters', '0'], '--iters must be >= 1'),
    (['--seeds', '0'], '--seeds must be >= 1'),
    (['--first-seed', '-1'], '--first-seed must be >= 0'),
])
def test_bad_benchmark_arguments_are_named(tool, args, message, capsys):
    with pytest.raises(SystemExit) as stop:
        tool.parse_args(args)
    assert stop.value.code == 2  # argparse's usage error, as every tool's
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_reduced_two_seed_run_aggregates_and_repeats_exactly(
        run_tool, load_tool, tmp_path, monkeypatch):
    out, data = tmp_path / 'bench', tmp_path / 'data'
    common = ['--models', 'tsn', 'msnet', '--data-root', data, *TINY,
              '--num-classes', '8']
    run_tool('motion_benchmark.py', '--seeds', '2', '--out-dir', out,
             '--log-dir', tmp_path / 'logs', *common, cwd=tmp_path)
    # The Runner logs of each run are in --log-dir, not in --out-dir.
    assert sorted(p.name for p in (tmp_path / 'logs' / 'msnet').iterdir()
                  ) == ['seed0', 'seed1']
    assert sorted(p.name for p in out.iterdir()) == [
        'results.json', 'results.md', 'top1_vs_iteration.png']
    report = json.loads((out / 'results.json').read_text())
    assert report['settings']['num_classes'] == 8
    runs = {(r['model'], r['seed']): r for r in report['runs']}
    assert sorted(runs) == [('msnet', 0), ('msnet', 1), ('tsn', 0),
                            ('tsn', 1)]
    for model in report['models']:
        mine = [runs[(model['model'], seed)] for seed in (0, 1)]
        finals = [run['top1'] for run in mine]
        assert all(run['val_top1_curve'][-1] == [4, run['top1']]
                   and len(run['train_loss']) == 4 for run in mine)
        assert model['summary']['top1_mean'] == pytest.approx(
            sum(finals) / 2)
        assert model['summary']['top1_min'] == min(finals)
        assert model['summary']['top1_max'] == max(finals)
    costs = {m['model']: m for m in report['models']}
    # MS adds parameters and FLOPs, the correlation among them.
    assert costs['msnet']['params'] > costs['tsn']['params']
    assert costs['msnet']['correlation_flops'] > 0
    assert costs['tsn']['correlation_flops'] == 0
    assert costs['msnet']['flops'] > (costs['tsn']['flops']
                                      + costs['msnet']['correlation_flops'])
    assert '| MSNet (TSM + MS after layer2) | 2 | ' in (
        out / 'results.md').read_text()
    assert (out / 'top1_vs_iteration.png').stat().st_size > 10000

    # Same settings again: nothing trains (train_run would raise).
    tool = load_tool('motion_benchmark')
    monkeypatch.setattr(motion, 'train_run', None)
    tool.main(['--seeds', '2', '--out-dir', str(out),
               *map(str, common)])

    # Reproducible, and validation draws nothing from training's random
    # stream: the same run validated twice as often gives the same losses,
    # the same final top-1 and, at the shared iterations, the same curve.
    run_tool('motion_benchmark.py', '--models', 'msnet', '--seeds', '1',
             '--out-dir', tmp_path / 'again', '--data-root', data, *TINY,
             '--num-classes', '8', '--val-interval', '1', cwd=tmp_path)
    repeat = json.loads(
        (tmp_path / 'again' / 'results.json').read_text())['runs'][0]
    first = runs[('msnet', 0)]
    assert repeat['train_loss'] == first['train_loss']
    assert repeat['top1'] == first['top1']
    assert [point for point in repeat['val_top1_curve']
            if point[0] % 2 == 0] == first['val_top1_curve']


@pytest.mark.slow
def test_reduced_benchmark_msnet_learns_motion_tsn_does_not(
        run_tool, tmp_path):
    out = tmp_path / 'bench'
    run_tool('motion_benchmark.py', '--models', 'tsn', 'msnet', '--seeds',
             '1', '--out-dir', out, '--data-root', tmp_path / 'data',
             '--num-segments', '4', '--size', '32', '--speed', '8',
             '--iters', '60', '--val-interval', '60', '--train-videos', '64',
             '--val-videos', '32', cwd=tmp_path)
    report = json.loads((out / 'results.json').read_text())
    top1 = {m['model']: m['summary']['top1_mean'] for m in report['models']}
    chance = 1 / 4
    assert top1['msnet'] >= 0.7, top1
    assert top1['tsn'] <= chance + 0.2, top1
