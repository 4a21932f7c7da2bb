"""The autograd-Function comparison (tools/benchmark.py --autograd): its
variants compute the same gradients, so that it compares like with like."""
import pytest

from msnet_plugin.benchmark.autograd import (VARIANTS, autograd_markdown,
                                             compare_autograd_functions,
                                             variant_step)

TINY = dict(batch=7, channels=4, size=8, frames=8, ms_channels=8)


@pytest.mark.parametrize('case_name', sorted(VARIANTS))
def test_variants_give_the_same_input_gradients(case_name):
    grads = {variant: variant_step(case_name, variant, TINY)()
             for variant in VARIANTS[case_name]}
    first = grads[VARIANTS[case_name][0]]
    assert all(grad.abs().max() > 0 for grad in first)
    for variant, values in grads.items():
        for value, expected in zip(values, first):
            # float32 logits of up to 100: 1e-4 of the largest gradient.
            assert (value - expected).abs().max() <= \
                1e-4 * expected.abs().max(), variant


def test_comparison_reports_ratios_to_the_hand_written_variant():
    result = compare_autograd_functions(cases=('correlation', ), case=TINY,
                                        rounds=1, memory=False)
    fast, strip = (result['correlation'][name]
                   for name in VARIANTS['correlation'])
    assert fast['time_ratio'] == 1
    assert strip['time_ratio'] == pytest.approx(strip['seconds'] /
                                                fast['seconds'])
    assert len(strip['times_s']) == 1
    assert '| correlation | strip_correlation |' in autograd_markdown(result)


def test_unknown_variant_is_named():
    with pytest.raises(ValueError, match="unknown variant 'fused'"):
        variant_step('correlation', 'fused', TINY)


def test_only_the_first_tail_variant_recomputes_the_tail(monkeypatch):
    """'plain autograd' and 'with_cp' really are the alternatives: they do
    not go through the recomputed tail's Function."""
    from msnet_plugin.models import motion_squeeze
    calls = []
    recompute = motion_squeeze.recomputed_conv_bn_relu
    monkeypatch.setattr(motion_squeeze, 'recomputed_conv_bn_relu',
                        lambda *args: calls.append(1) or recompute(*args))
    counts = {}
    for variant in VARIANTS['tail']:
        calls.clear()
        variant_step('tail', variant, TINY)()
        counts[variant] = len(calls)
    assert counts == {'recomputed tail': 1, 'plain autograd': 0,
                      'with_cp': 0}


@pytest.mark.slow
def test_memory_is_measured_in_a_child_per_variant():
    result = compare_autograd_functions(cases=('correlation', ), case=TINY,
                                        rounds=1, memory=True)
    for figures in result['correlation'].values():
        assert figures['peak_mb'] >= 0 and 'held_mb' in figures
    hand_written = next(iter(VARIANTS['correlation']))
    assert result['correlation'][hand_written]['memory_ratio'] == 1
