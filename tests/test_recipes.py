"""Every config trains one step and tests one step through its own pipeline.

Each config runs in this process through mmengine's Runner (no interpreter
start-up per config) on a tiny generated dataset in that config's own layout
(rawframes for sthv1, videos otherwise): one clip, batch 1, no workers. The
pipelines are the config's own (same transforms, frame sampling and test
views) with two reductions so that 11 models fit a few CPU minutes:

- every spatial size is divided by 14 (resize to 18 instead of 256, crop 16
  instead of 224); the models are fully convolutional, so only the cost
  changes;
- Kinetics' dense test sampling looks at 1 window instead of 10.

The frames each model receives are counted and compared with what the
config's sampling must produce (``EXPECTED_FRAMES``), so a 16-frame config
that still samples 8 frames fails here.
"""
import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner

from msnet_plugin.datasets import (generate_rawframe_dataset,
                                   generate_video_dataset)

from repo_paths import REPO

pytestmark = pytest.mark.usefixtures('one_thread')
CONFIGS = sorted((REPO / 'configs').glob('*.py'))
SPATIAL_DIVISOR = 14
CLIP_FRAMES = 16  # frames in each generated clip

# config: (data layout, frames per training clip, frames per test clip).
# Test frames = sampled clips x crops x segments, from each test pipeline:
# sth: twice_sample (2) x ThreeCrop (3); Kinetics/HMDB51: dense windows
# (reduced to 1) x TenCrop (10); TSN: TenCrop (10); MobileNetV2: ThreeCrop.
EXPECTED_FRAMES = {
    'msnet_r18_demo_synthetic': ('synthetic', 8, 8),
    'msnet_r18_demo_synthetic_motion_vis': ('synthetic', 8, 8),
    'msnet_tsm_r50_sthv1': ('rawframes', 8, 2 * 3 * 8),
    'msnet_tsm_r50_sthv1_16f': ('rawframes', 16, 2 * 3 * 16),
    'msnet_tsm_r50_sthv2': ('videos', 8, 2 * 3 * 8),
    'msnet_tsm_r50_sthv2_16f': ('videos', 16, 2 * 3 * 16),
    'msnet_tsm_r50_k400': ('videos', 8, 1 * 10 * 8),
    'msnet_tsm_r50_k400_16f': ('videos', 16, 1 * 10 * 16),
    'msnet_tsm_r50_k400_from_tsm': ('videos', 8, 1 * 10 * 8),
    'msnet_tsm_r50_sthv2_from_tsm': ('videos', 8, 2 * 3 * 8),
    'msnet_tsm_r50_hmdb51_ft': ('videos', 16, 1 * 10 * 16),
    'msnet_neck_tsn_r50_sthv2': ('videos', 8, 10 * 8),
    'msnet_tsm_r50_trnhead_sthv2': ('videos', 8, 2 * 3 * 8),
    'msnet_neck_tsm_mobilenetv2_k400': ('videos', 8, 3 * 8),
}

# Transform argument -> the spatial sizes it holds.
SPATIAL_ARGS = {
    'Resize': 'scale',
    'MultiScaleCrop': 'input_size',
    'CenterCrop': 'crop_size',
    'ThreeCrop': 'crop_size',
    'TenCrop': 'crop_size',
}


def shrink(pipeline, test):
    """The pipeline with spatial sizes / SPATIAL_DIVISOR and, for testing,
    one dense-sampling window; every transform and its order unchanged."""
    shrunk = []
    for step in pipeline:
        step = dict(step)
        arg = SPATIAL_ARGS.get(step['type'])
        if arg is not None:
            size = step[arg]
            step[arg] = (tuple(s if s < 0 else s // SPATIAL_DIVISOR
                               for s in size) if isinstance(size, (tuple, list))
                         else size // SPATIAL_DIVISOR)
        if step['type'] == 'DenseSampleFrames' and test:
            step['num_sample_positions'] = 1
        shrunk.append(step)
    return shrunk


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """One 16-frame clip in each layout: {layout: (ann_file, prefix)}."""
    root = tmp_path_factory.mktemp('tiny_data')
    videos = generate_video_dataset(root / 'videos', num_videos=1, seed=0,
                                    num_frames=CLIP_FRAMES, size=64)
    frames = generate_rawframe_dataset(root / 'rawframes', num_videos=1,
                                       seed=0, num_frames=CLIP_FRAMES, size=64)
    return dict(
        videos=(videos, dict(video=str(root / 'videos'))),
        rawframes=(frames, dict(img=str(root / 'rawframes' / 'rawframes'))),
        synthetic=root / 'synthetic')


def tiny_runner_config(config, layout, tiny_data, work_dir):
    """The config, pretrained weights off, on the tiny dataset: one training
    iteration, no validation, no checkpoint files."""
    cfg = Config.fromfile(config)
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    cfg.load_from = None
    cfg.model.backbone.pretrained = None
    if cfg.model.backbone.type == 'MobileNetV2TSM':
        cfg.model.backbone.pretrained2d = False  # it loads even with None
    for split in ('train', 'test'):
        loader = cfg[f'{split}_dataloader']
        loader.update(batch_size=1, num_workers=0, persistent_workers=False)
        dataset = loader.dataset
        if layout == 'synthetic':
            dataset.update(data_root=str(tiny_data[layout] / split),
                           num_videos=1)
        else:
            ann_file, prefix = tiny_data[layout]
            dataset.ann_file = str(ann_file)
            dataset.data_prefix = prefix
        dataset.pipeline = shrink(dataset.pipeline, test=split == 'test')
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.train_cfg.max_epochs = 1
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1,
                                        save_last=False)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.randomness = dict(seed=0)
    cfg.log_level = 'WARNING'
    return cfg


def motion_squeeze_parameters(model):
    return {
        name: param.detach().clone()
        for name, param in model.named_parameters()
        if '.ms_layer' in f'.{name}' or name.startswith('neck.motion_squeeze')
    }


def test_every_config_has_expected_frames():
    assert sorted(EXPECTED_FRAMES) == [c.stem for c in CONFIGS]


# The demo config is in the quick loop; the recipes (R50, seconds each) are
# slow tests.
@pytest.mark.parametrize('config', [
    pytest.param(config, id=config.stem, marks=() if 'demo' in config.stem
                 else pytest.mark.slow) for config in CONFIGS
])
def test_config_trains_and_tests_a_step(config, tiny_data, tmp_path,
                                        monkeypatch):
    # The Runner logs and dumps its config formatted by yapf, seconds per
    # Runner on a busy CPU; the formatting is not under test.
    monkeypatch.setattr(Config, 'pretty_text', property(lambda cfg: cfg.text))
    layout, train_frames, test_frames = EXPECTED_FRAMES[config.stem]
    cfg = tiny_runner_config(config, layout, tiny_data, tmp_path)
    runner = Runner.from_cfg(cfg)
    model = runner.model
    frames_seen = []
    model.backbone.register_forward_pre_hook(
        lambda module, args: frames_seen.append(args[0].shape[0]))
    before = motion_squeeze_parameters(model)
    assert before, 'no MotionSqueeze in the model'

    runner.train()
    assert runner.iter == 1
    assert frames_seen == [train_frames]
    after = motion_squeeze_parameters(model)
    # The step reached MS: its 1x1 reduction conv changed.
    reduce_weights = [n for n in before if n.endswith('reduce.0.weight')]
    assert reduce_weights
    for name in reduce_weights:
        assert not torch.equal(before[name], after[name]), name
    assert all(torch.isfinite(p).all() for p in after.values())

    runner.test()
    assert frames_seen == [train_frames, test_frames]
