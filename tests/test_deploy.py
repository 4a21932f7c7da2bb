"""Deployment: tools/export.py (ONNX, TorchScript), onnxruntime parity, the
segment-count check, and MotionSqueeze as a compact graph for both ONNX
exporters, torch.jit.trace, torch.export and torch.compile.

The model is the demo config's MSNet-R18 at 32x32 px with random weights,
saved as a checkpoint in tmp, so the tools load real weights from a file.
The ONNX parity test exports it as configured (15x15 window); the
TorchScript test uses a 3x3 window (``ms_cfg.patch_size=3``, same code and
weights) to stay short. The graph tests take MotionSqueeze(128) alone on
(8, 128, 8, 8) features, the issue's case, and compare with eager.
"""
import importlib.util
import re

import onnx
import pytest
import torch
from mmaction.structures import ActionDataSample
from mmengine.runner import save_checkpoint

from msnet_plugin.cli import EXIT_USER_ERROR
from msnet_plugin.deploy import (build_frames_to_scores, export_onnx,
                                 nonstandard_onnx_ops, onnxruntime_scores)
from msnet_plugin.deploy.frames_to_scores import example_frames
from msnet_plugin.deploy.onnx_export import onnx_node_count
from msnet_plugin.models import MotionSqueeze

from repo_paths import DEMO_CONFIG, REPO

SEGMENTS = 8  # the demo config's
SIZE = (32, 32)
SMALL_WINDOW = {'model.backbone.ms_cfg.patch_size': 3}
#: The issue's bound on the ONNX graph of MotionSqueeze(128) (2,335 nodes
#: when the correlation was unrolled into one product per displacement).
MAX_MS_ONNX_NODES = 150


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


@pytest.mark.slow
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


@pytest.mark.slow
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
        demo_model_and_checkpoint, tool_error, tmp_path):
    """A user's mistake: exit status 2 and one line, as every tool."""
    _, checkpoint = demo_model_and_checkpoint
    output = tmp_path / 'never.onnx'
    code, err = tool_error(
        'export', export_args(checkpoint, output, '--num-segments', '16'))
    assert code == EXIT_USER_ERROR
    assert re.fullmatch(r'error: --num-segments 16 does not match .*model'
                        r'\.backbone\.num_segments=8 .*\n', err), err
    assert not output.exists()
    with pytest.raises(ValueError, match='--num-segments 4 does not match'):
        build_frames_to_scores(DEMO_CONFIG, num_segments=4)


@pytest.fixture(scope='module')
def motion_squeeze_128():
    """MotionSqueeze(128), eval mode, the (16, 128, 8, 8) input it is traced
    with (2 clips: torch.export fixes an axis of size 1) and a (24, 128, 8,
    8) input it was not, with the eager outputs."""
    torch.manual_seed(0)
    module = MotionSqueeze(128, num_segments=8).eval()
    traced_input = torch.randn(16, 128, 8, 8)
    other_input = torch.randn(24, 128, 8, 8)
    with torch.no_grad():
        displacement, _ = module.estimate_motion(other_input)
        expected = module(other_input)
    assert displacement.abs().max() > 0.05  # the motion path is not all zero
    return module, traced_input, other_input, expected


def check_onnx_motion_squeeze(motion_squeeze_128, path, exporter):
    module, traced_input, other_input, expected = motion_squeeze_128
    export_onnx(module, traced_input, str(path), exporter, batch_multiple=8)
    assert nonstandard_onnx_ops(str(path)) == []
    nodes = onnx_node_count(str(path))
    assert nodes <= MAX_MS_ONNX_NODES, nodes
    graph = onnx.load(str(path)).graph
    # Two matrix products whatever the batch: the correlation's and the
    # soft-argmax's expectation (not one per displacement).
    assert [node.op_type for node in graph.node].count('MatMul') == 2
    # The softmax over the last axis (onnxruntime's native one), not over
    # the channels of an NCHW tensor.
    softmax, = (node for node in graph.node if node.op_type == 'Softmax')
    axis = onnx.helper.get_attribute_value(softmax.attribute[0])
    rank = 4  # (B, H, W, P*P)
    assert axis in (-1, rank - 1), axis
    torch.testing.assert_close(onnxruntime_scores(str(path), other_input),
                               expected, rtol=1e-5, atol=1e-5)


def test_motion_squeeze_onnx_graph_is_compact_torchscript_exporter(
        motion_squeeze_128, tmp_path):
    check_onnx_motion_squeeze(motion_squeeze_128, tmp_path / 'ms.onnx',
                              'torchscript')


@pytest.mark.slow
def test_motion_squeeze_onnx_graph_is_compact_dynamo_exporter(
        motion_squeeze_128, tmp_path):
    check_onnx_motion_squeeze(motion_squeeze_128, tmp_path / 'ms.onnx',
                              'dynamo')


def test_motion_squeeze_jit_trace_is_compact_and_matches_eager(
        motion_squeeze_128):
    module, traced_input, other_input, expected = motion_squeeze_128
    with torch.no_grad():
        traced = torch.jit.trace(module, (traced_input, ), check_trace=False)
        kinds = [node.kind() for node in traced.inlined_graph.nodes()]
        assert kinds.count('aten::bmm') + kinds.count('aten::matmul') == 2
        assert not any(kind.startswith('prim::PythonOp') for kind in kinds)
        torch.testing.assert_close(traced(other_input), expected, rtol=1e-5,
                                   atol=1e-5)


@pytest.mark.slow
def test_motion_squeeze_torch_export_with_a_dynamic_batch(motion_squeeze_128):
    module, traced_input, other_input, expected = motion_squeeze_128
    clips = torch.export.Dim('clips')
    with torch.no_grad():
        program = torch.export.export(
            module, (traced_input, ),
            dynamic_shapes=({0: 8 * clips}, ))
        targets = [str(node.target) for node in program.graph.nodes]
        products = [target for target in targets
                    if target.split('.')[:2] in (['aten', 'bmm'],
                                                 ['aten', 'mm'],
                                                 ['aten', 'matmul'])]
        assert len(products) == 2, products
        torch.testing.assert_close(program.module()(other_input), expected,
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_gives_eager_outputs_and_gradients(motion_squeeze_128):
    """torch.compile on MotionSqueeze(128): a training step's output and
    gradients, through dynamo and AOT autograd (the traced forward and
    backward of the plain formulation, decomposed as inductor receives
    them), with the ``aot_eager`` backend: inductor's own code generation
    for both would take about half a minute from a cold cache on 2 cores. Inductor itself is checked
    by the benchmark's compile child (tests/test_benchmark_tools.py), on
    the same module in inference."""
    _, _, other_input, _ = motion_squeeze_128
    torch.manual_seed(1)
    trained = MotionSqueeze(128, num_segments=8)
    grad_out = torch.randn(24, 128, 8, 8)
    results = []
    for run in (trained,
                torch.compile(trained, backend='aot_eager', dynamic=False)):
        x = other_input.clone().requires_grad_()
        out = run(x)
        results.append([out] + list(
            torch.autograd.grad(out, [x] + list(trained.parameters()),
                                grad_out)))
    compiled_out, eager_out = results[1][0], results[0][0]
    # The traced plain formulation sums float32 products in another order
    # than the eager kernels: within 1e-5 of the largest output value.
    torch.testing.assert_close(
        compiled_out, eager_out, rtol=1e-5,
        atol=1e-5 * float(eager_out.abs().max()))
    # Gradients sum thousands of terms in another order: within 1e-5 of the
    # largest gradient (BatchNorm weights' gradients cancel to ~1e-4 of it).
    scale = max(grad.abs().max() for grad in results[0][1:])
    for got, eager in zip(results[1][1:], results[0][1:]):
        torch.testing.assert_close(got, eager, rtol=1e-5,
                                   atol=1e-5 * float(scale))



@pytest.mark.parametrize('training,grad', [(True, True), (False, True),
                                           (False, False)])
def test_torch_compile_traces_motion_squeeze_in_one_graph(one_thread,
                                                          training, grad):
    """Dynamo captures a network with MotionSqueeze inside as one graph (no
    graph break: each break is a graph of its own for inductor to compile,
    and the code between graphs runs eagerly): where autograd runs with
    the correlation and the soft-argmax as their msnet:: ops and MS's other
    layers traced, in inference with MS as one msnet:: op."""
    graphs = []

    def recording_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1),
        MotionSqueeze(16, num_segments=4, reduced_channels=8, patch_size=5),
        torch.nn.Conv2d(16, 4, 1)).train(training)
    x = torch.randn(8, 3, 8, 8)
    torch._dynamo.reset()
    try:
        with torch.set_grad_enabled(grad):
            torch.compile(net, backend=recording_backend)(x)
    finally:
        torch._dynamo.reset()
    assert len(graphs) == 1, [str(graph.graph) for graph in graphs]
    code = str(graphs[0].graph)
    assert ('msnet.motion_squeeze_inference' in code) == (not grad)
    for kernel in ('msnet.local_correlation', 'msnet.gaussian_soft_argmax'):
        assert (kernel in code) == grad
    assert ('bmm' in code) == grad  # MS's 1x1 convolutions, traced
