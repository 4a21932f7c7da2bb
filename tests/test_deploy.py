"""Deployment: tools/export.py (ONNX, TorchScript), onnxruntime parity, the
segment-count check, the plain-correlation switch and torch.compile.

The model is the demo config's MSNet-R18 at 32x32 px with random weights,
saved as a checkpoint in tmp, so the tools load real weights from a file.
The ONNX parity test exports it as configured (15x15 window). To keep the
suite short, the TorchScript and switch tests use a 3x3 window
(``ms_cfg.patch_size=3``, the same code and weights, 9 instead of 225
unrolled displacements), and torch.compile runs on the MS module alone.
"""
import importlib.util
from pathlib import Path

import onnx
import pytest
import torch
from mmaction.structures import ActionDataSample
from mmengine.runner import save_checkpoint

from msnet_plugin.deploy import (build_frames_to_scores, nonstandard_onnx_ops,
                                 onnxruntime_scores, plain_correlation)
from msnet_plugin.deploy import plain_path
from msnet_plugin.deploy.frames_to_scores import example_frames
from msnet_plugin.models import MotionSqueeze, local_correlation
from msnet_plugin.models import motion_squeeze as motion_squeeze_module

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / 'configs' / 'msnet_r18_demo_synthetic.py'
SEGMENTS = 8  # the demo config's
SIZE = (32, 32)
SMALL_WINDOW = {'model.backbone.ms_cfg.patch_size': 3}


def load_export_tool():
    spec = importlib.util.spec_from_file_location(
        'msnet_export_tool', REPO / 'tools' / 'export.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


@pytest.fixture(scope='module')
def export_tool():
    return load_export_tool()


@pytest.fixture(scope='module')
def demo_model_and_checkpoint(tmp_path_factory):
    """The demo recognizer with random weights and its checkpoint file."""
    torch.manual_seed(0)
    model = build_frames_to_scores(DEMO_CONFIG)
    path = tmp_path_factory.mktemp('deploy') / 'msnet_r18_random.pth'
    save_checkpoint({'state_dict': model.recognizer.state_dict(),
                     'meta': {}}, str(path))
    return model, path


@pytest.fixture(scope='module')
def small_window_model(demo_model_and_checkpoint):
    """The same checkpoint in the demo model with a 3x3 MS window."""
    _, checkpoint = demo_model_and_checkpoint
    return build_frames_to_scores(DEMO_CONFIG, str(checkpoint),
                                  cfg_options=SMALL_WINDOW)


def export_args(checkpoint, output, *extra, small_window=False):
    args = [str(DEMO_CONFIG), str(checkpoint), '--shape', *map(str, SIZE),
            '--output', str(output), *map(str, extra)]
    if small_window:
        args += ['--cfg-options'] + [f'{key}={value}'
                                     for key, value in SMALL_WINDOW.items()]
    return args


def test_frames_to_scores_is_what_the_recognizer_predicts(
        demo_model_and_checkpoint):
    """The wrapper's scores are MMAction2's own test_step pred_score, which
    runs the data preprocessor (stack, normalise) and predict()."""
    model, _ = demo_model_and_checkpoint
    frames = example_frames(SEGMENTS, SIZE, batch_size=2, seed=5).round()
    data = dict(inputs=[clip.to(torch.uint8) for clip in frames],
                data_samples=[ActionDataSample() for _ in frames])
    with torch.no_grad():
        predicted = model.recognizer.test_step(data)
        scores = model(frames)
    expected = torch.stack([sample.pred_score for sample in predicted])
    assert scores.shape == (2, 4)
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-6)
    # average_clips='prob': every row is a distribution.
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(2))


def test_onnx_export_runs_in_onnxruntime_with_a_dynamic_batch(
        demo_model_and_checkpoint, export_tool, tmp_path, capsys):
    model, checkpoint = demo_model_and_checkpoint
    output = tmp_path / 'msnet.onnx'
    assert export_tool.main(export_args(checkpoint, output)) == str(output)
    assert 'max |export - PyTorch|' in capsys.readouterr().out

    assert nonstandard_onnx_ops(str(output)) == []
    graph = onnx.load(str(output)).graph
    frames_dims = graph.input[0].type.tensor_type.shape.dim
    assert frames_dims[0].dim_param  # symbolic batch
    assert [dim.dim_value for dim in frames_dims[1:]] == [SEGMENTS, 3, *SIZE]
    assert 'ArgMax' in {node.op_type for node in graph.node}  # MS is in it

    # A batch the export never saw, against the model the checkpoint came
    # from (so the tool loaded the weights, not a fresh random init).
    frames = example_frames(SEGMENTS, SIZE, batch_size=4, seed=9)
    with torch.no_grad():
        expected = model(frames)
    scores = onnxruntime_scores(str(output), frames)
    assert scores.shape == (4, 4)
    torch.testing.assert_close(scores, expected, rtol=0, atol=1e-4)


def test_torchscript_export_matches_pytorch(demo_model_and_checkpoint,
                                            small_window_model, export_tool,
                                            tmp_path):
    _, checkpoint = demo_model_and_checkpoint
    model = small_window_model
    output = tmp_path / 'msnet.pt'
    export_tool.main(
        export_args(checkpoint, output, '--format', 'torchscript',
                    small_window=True))
    loaded = torch.jit.load(str(output))
    frames = example_frames(SEGMENTS, SIZE, batch_size=3, seed=11)
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames), model(frames), rtol=0,
                                   atol=1e-5)


def test_export_refuses_a_segment_count_other_than_the_configs(
        demo_model_and_checkpoint, export_tool, tmp_path):
    _, checkpoint = demo_model_and_checkpoint
    output = tmp_path / 'never.onnx'
    with pytest.raises(SystemExit, match=r'--num-segments 16 does not match '
                       r'.*model\.backbone\.num_segments=8'):
        export_tool.main(
            export_args(checkpoint, output, '--num-segments', '16'))
    assert not output.exists()
    with pytest.raises(ValueError, match='--num-segments 4 does not match'):
        build_frames_to_scores(DEMO_CONFIG, num_segments=4)


class _NumpyCorrelation(torch.autograd.Function):
    """A correlation no exporter can trace: it leaves torch for numpy, so a
    trace records its output as a constant (stands in for a compiled
    kernel)."""

    @staticmethod
    def forward(ctx, f1, f2, max_displacement):
        result = local_correlation(f1, f2, max_displacement)
        return torch.from_numpy(result.detach().numpy().copy())


def untraceable_correlation(f1, f2, max_displacement, impl=None):
    return _NumpyCorrelation.apply(f1, f2, max_displacement)


def test_plain_correlation_switch_exports_a_default_that_cannot_be_traced(
        demo_model_and_checkpoint, small_window_model, export_tool, tmp_path,
        monkeypatch):
    _, checkpoint = demo_model_and_checkpoint
    model = small_window_model
    monkeypatch.setattr(motion_squeeze_module, 'local_correlation',
                        untraceable_correlation)
    with plain_correlation():
        assert (motion_squeeze_module.local_correlation is
                plain_path.PLAIN_LOCAL_CORRELATION)
    assert motion_squeeze_module.local_correlation is untraceable_correlation

    # Without the switch the trace freezes the correlation of the example
    # and the tool's check on other inputs fails.
    with pytest.raises(SystemExit, match='(?s)(fails on a batch|differs from '
                       'PyTorch).*--plain-correlation'):
        export_tool.main(export_args(checkpoint, tmp_path / 'frozen.onnx',
                                     small_window=True))
    output = tmp_path / 'plain.onnx'
    export_tool.main(
        export_args(checkpoint, output, '--plain-correlation',
                    small_window=True))
    frames = example_frames(SEGMENTS, SIZE, batch_size=2, seed=13)
    with torch.no_grad():
        expected = model(frames)
    torch.testing.assert_close(onnxruntime_scores(str(output), frames),
                               expected, rtol=0, atol=1e-4)


def test_torch_compile_gives_the_same_motion_squeeze_output():
    """CPU inductor on the MS module alone, with a 3x3 window: compiling the
    full 15x15 window (225 unrolled displacements) or the whole recognizer
    takes minutes on 2 cores; tools/export.py --benchmark compiles those."""
    torch.manual_seed(0)
    module = MotionSqueeze(16, num_segments=4, patch_size=3).eval()
    features = torch.randn(8, 16, 8, 8)
    with torch.no_grad():
        expected = module(features)
        displacement, confidence = module.estimate_motion(features)
        compiled = torch.compile(module, dynamic=False)(features)
    assert displacement.abs().max() > 0  # the motion path is not all zero
    torch.testing.assert_close(compiled, expected, rtol=1e-5, atol=1e-5)
