"""MMAction2's tools/analysis_tools/get_flops.py beside the plugin's
tools/get_flops.py (docs/benchmarks.md): they differ by exactly the traced
strips of the correlation, which the plugin replaces by the correlation's
own multiply-adds."""
import os
import re
import subprocess
import sys
from pathlib import Path

import mmaction
import pytest
import torch
from mmengine.config import Config

from msnet_plugin.flops import (build_recognizer, flop_analyzer,
                                model_complexity, recognizer_input_shape)

from repo_paths import REPO
CONFIG = REPO / 'configs' / 'msnet_tsm_r50_sthv2.py'
MMACTION_GET_FLOPS = (Path(mmaction.__file__).parent / '.mim' / 'tools' /
                      'analysis_tools' / 'get_flops.py')


@pytest.mark.slow
def test_mmaction_get_flops_counts_the_traced_strips_instead(tmp_path):
    if not MMACTION_GET_FLOPS.is_file():
        pytest.skip('this mmaction2 install has no .mim/tools')
    result = subprocess.run(
        [sys.executable, str(MMACTION_GET_FLOPS), str(CONFIG), '--shape',
         '8', '3', '224', '224'],
        cwd=REPO, capture_output=True, text=True, timeout=1800,
        env=dict(os.environ, PYTHONPATH=str(REPO), PYTHONWARNINGS='ignore'))
    assert result.returncode == 0, result.stderr[-3000:]
    mmaction_gflops = float(re.search(r'Flops: ([0-9.]+)G',
                                      result.stdout).group(1))

    model = build_recognizer(Config.fromfile(CONFIG), 8)
    shape = recognizer_input_shape(model, 8, 224, 224)
    info = model_complexity(model, shape)
    model.eval()
    with torch.no_grad():
        by_module = flop_analyzer(
            model, torch.randn(shape)).by_module_and_operator()
    traced_strips = by_module['model.backbone.ms_layer2']['bmm']
    assert traced_strips > 2 * info['correlation_flops']
    assert mmaction_gflops == round(
        (info['flops'] - info['correlation_flops'] + traced_strips) / 1e9, 3)
    print(f"MMAction2 {mmaction_gflops} G, plugin {info['flops'] / 1e9:.3f} G"
          f", strips {traced_strips / 1e9:.3f} G, correlation "
          f"{info['correlation_flops'] / 1e9:.3f} G")
