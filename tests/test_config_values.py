"""A wrong value in a config, refused by the constructor that gets it deep in
mmengine's registry, is named by the key the user writes
(msnet_plugin/config_errors.py): one line with the key, the value, what is
allowed and the config file; exit status 2 through the tools, the traceback
with --debug; an error that names nothing of the config keeps its
traceback."""

import pytest
from mmaction.registry import DATASETS, MODELS, TRANSFORMS
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.optim import build_optim_wrapper
from mmengine.registry import Registry
from mmengine.runner import Runner
from torch import nn

from msnet_plugin import config_errors
from msnet_plugin.cli import EXIT_USER_ERROR, user_error_message
from msnet_plugin.config_errors import config_value_message, value_line

from repo_paths import DEMO_CONFIG
WHERE = (f'set in {DEMO_CONFIG}, a config it inherits or --cfg-options')


def demo_config(**options):
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.merge_from_dict(options)
    return cfg


def message_of(build, cfg, config=str(DEMO_CONFIG)):
    """The tools' one-line message for what ``build(cfg)`` raises (the
    Config is in this frame, as it is in a tool's main)."""
    with pytest.raises(Exception) as raised:
        build(cfg)
    return user_error_message(raised.value, config)


@pytest.mark.parametrize('key, value, refusal', [
    ('model.backbone.ms_cfg.patch_size', 14,
     'patch_size must be an odd number >= 3 (the window -d..d, d = '
     'patch_size // 2), got 14'),
    ('model.backbone.ms_cfg.reduced_channels', 0,
     'reduced_channels must be positive, got 0'),
    ('model.backbone.ms_cfg.soft_argmax', 'argmax',
     "soft_argmax must be one of ('kernel', 'plain'), got 'argmax'"),
])
def test_wrong_motion_squeeze_value_names_its_config_key(key, value, refusal):
    """MotionSqueeze is built by the backbone from ms_cfg, two registry
    builds deep: the key is the one the user writes."""
    cfg = demo_config(**{key: value})
    assert message_of(lambda cfg: MODELS.build(cfg.model), cfg) == (
        f'{key} = {value!r} ({WHERE}): {refusal}; set another value there '
        f'or with --cfg-options {key}=VALUE')


def test_negative_learning_rate_names_the_optimizer_key():
    """torch's 'Invalid learning rate' names neither the key nor the rule:
    the message adds both."""
    cfg = demo_config(**{'optim_wrapper.optimizer.lr': -0.1})
    assert message_of(lambda cfg: build_optim_wrapper(nn.Linear(2, 2),
                                                      cfg.optim_wrapper),
                      cfg) == (
        f'optim_wrapper.optimizer.lr = -0.1 ({WHERE}): Invalid learning '
        'rate: -0.1 (the learning rate must be >= 0); set another value '
        'there or with --cfg-options optim_wrapper.optimizer.lr=VALUE')


def test_wrong_value_in_a_datasets_pipeline_names_the_dataset_key(tmp_path):
    """The transform is built by the dataset: the key goes through it."""
    key = 'train_dataloader.dataset.pipeline.3.direction'
    cfg = demo_config(**{key: 'diagonal',
                         'train_dataloader.dataset.num_videos': 1,
                         'train_dataloader.dataset.size': 32,
                         'train_dataloader.dataset.data_root':
                         str(tmp_path)})
    assert message_of(lambda cfg: DATASETS.build(
        cfg.train_dataloader.dataset), cfg) == (
        f"{key} = 'diagonal' ({WHERE}): Direction diagonal is not supported. "
        "Currently support ones are ['horizontal', 'vertical']; set another "
        f'value there or with --cfg-options {key}=VALUE')


@pytest.mark.parametrize('option, value, refusal', [
    ('batch_size', 0, 'batch_size should be a positive integer value, but '
     'got batch_size=0'),
    ('num_workers', -1, 'num_workers option should be non-negative; use '
     'num_workers=0 to disable multiprocessing'),
])
def test_wrong_dataloader_value_names_the_dataloader_key(
        option, value, refusal, tmp_path):
    """mmengine's Runner makes the DataLoader itself (no registry)."""
    key = f'train_dataloader.{option}'
    cfg = demo_config(**{key: value,
                         'train_dataloader.persistent_workers': False,
                         'train_dataloader.dataset.num_videos': 1,
                         'train_dataloader.dataset.size': 32,
                         'train_dataloader.dataset.data_root':
                         str(tmp_path)})
    assert message_of(lambda cfg: Runner.build_dataloader(
        cfg.train_dataloader), cfg) == (
        f'{key} = {value} ({WHERE}): {refusal}; set another value there or '
        f'with --cfg-options {key}=VALUE')


def test_wrong_pipeline_value_names_the_transform_and_its_line(tmp_path):
    """A transform of a pipeline, its value written in the config file: the
    line of the file is named."""
    config = tmp_path / 'flip_diagonal.py'
    config.write_text(
        f"_base_ = '{DEMO_CONFIG}'\n"
        'train_pipeline = [\n'
        "    dict(type='DecordInit'),\n"
        "    dict(type='Flip', direction='diagonal'),\n"
        ']\n')
    cfg = Config.fromfile(config)
    message = message_of(lambda cfg: Compose(cfg.train_pipeline), cfg,
                         str(config))
    assert message.startswith(
        f"train_pipeline.1.direction = 'diagonal' (line 4 of {config}): "
        'Direction diagonal is not supported. Currently support ones are '
        "['horizontal', 'vertical']; set another value there")


def test_failed_assert_of_a_transform_names_its_argument():
    """OpenMMLab constructors check with a bare assert: its line names the
    argument."""
    cfg = Config(dict(pipeline=[dict(type='RandomRescale',
                                     scale_range=(320, 256))]))
    message = message_of(
        lambda cfg: TRANSFORMS.build(cfg.pipeline[0]), cfg, None)
    assert message == (
        'pipeline.0.scale_range = (320, 256) (in the config): assert '
        'scale_range[0] < scale_range[1] is false; set another value there '
        'or with --cfg-options pipeline.0.scale_range=VALUE')


def test_misspelled_argument_names_the_key_and_the_close_name():
    cfg = demo_config(**{'model.backbone.ms_cfg.patch_sise': 7})
    assert message_of(lambda cfg: MODELS.build(cfg.model), cfg) == (
        f'model.backbone.ms_cfg.patch_sise ({WHERE}): MotionSqueeze takes no '
        'argument patch_sise; did you mean patch_size?')


THINGS = Registry('thing')


@THINGS.register_module()
class Thing:

    def __init__(self, size, depth=1):
        if size % 2:
            raise ValueError(f'size must be even, got {size}')
        if depth > 3:
            raise ValueError('internal tables hold 3 layers')  # a bug
        if depth < 0:
            raise RuntimeError(f'depth {depth}')  # not a ValueError


def test_only_errors_about_a_value_of_the_config_are_attributed():
    cfg = Config(dict(thing=dict(type='Thing', size=2, depth=1)))

    def build(**options):
        cfg.merge_from_dict(options)
        with pytest.raises(Exception) as raised:
            THINGS.build(cfg.thing)
        return config_value_message(raised.value, 'thing.py')

    assert build(**{'thing.size': 3}) == (
        'thing.size = 3 (set in thing.py, a config it inherits or '
        '--cfg-options): size must be even, got 3; set another value there '
        'or with --cfg-options thing.size=VALUE')
    # The message names no key and no value of the config: a bug.
    assert build(**{'thing.size': 2, 'thing.depth': 5}) is None
    assert build(**{'thing.depth': -1}) is None  # not a ValueError
    # The same error raised outside a registry build is not attributed.
    try:
        Thing(3)
    except ValueError as error:
        assert config_value_message(error, 'thing.py') is None


def test_a_failing_search_keeps_the_original_error(monkeypatch):
    """The search runs inside the tools' error handler: it must not raise."""
    cfg = Config(dict(thing=dict(type='Thing', size=3)))
    with pytest.raises(ValueError) as raised:
        THINGS.build(cfg.thing)

    def broken(tb):
        raise RuntimeError('a bug in the search')

    monkeypatch.setattr(config_errors, '_build_frames', broken)
    assert config_value_message(raised.value, 'thing.py') is None


def test_value_line_finds_keyword_and_dict_literal_forms(tmp_path):
    config = tmp_path / 'c.py'
    config.write_text("a = dict(lr=0.1)  # lr=-0.1 in a comment\n"
                      "b = {'patch_size': 14}\nc = dict(lr=-0.1)\n")
    assert value_line(str(config), 'lr', -0.1) == f'line 3 of {config}'
    assert value_line(str(config), 'patch_size', 14) == f'line 2 of {config}'
    assert value_line(str(config), 'patch_size', 1) is None


@pytest.mark.slow
@pytest.mark.parametrize('tool', ['train', 'test', 'export', 'demo',
                                  'visualize_motion'])
def test_every_tool_names_the_config_key_of_a_wrong_value(
        tool, tool_error, tmp_path, monkeypatch, load_tool):
    """Through each tool, in a config file: one line, exit status 2;
    --debug shows the traceback."""
    monkeypatch.chdir(tmp_path)
    config = tmp_path / 'patch_14.py'
    config.write_text(f"_base_ = '{DEMO_CONFIG}'\n"
                      'model = dict(backbone=dict(ms_cfg=dict(\n'
                      '    patch_size=14)))\n')
    weights = tmp_path / 'weights.pth'
    import torch
    torch.save({'w': torch.zeros(1)}, weights)
    video = tmp_path / 'clip.mp4'
    from msnet_plugin.datasets.synthetic_motion import generate_video_dataset
    generate_video_dataset(str(tmp_path / 'videos'), 1, 0, 8, 32, 4, 4)
    video = next((tmp_path / 'videos').rglob('*.mp4'))
    arguments = {
        'train': [config, '--work-dir', tmp_path / 'work'],
        'test': [config, weights, '--work-dir', tmp_path / 'work'],
        'export': [config, weights, '--output', tmp_path / 'm.onnx'],
        'demo': [config, weights, video],
        'visualize_motion': [config, weights, video, '--out',
                             tmp_path / 'motion'],
    }[tool]
    assert tool_error(tool, arguments) == (EXIT_USER_ERROR, (
        f'error: model.backbone.ms_cfg.patch_size = 14 (line 3 of {config}): '
        'patch_size must be an odd number >= 3 (the window -d..d, d = '
        'patch_size // 2), got 14; set another value there or with '
        '--cfg-options model.backbone.ms_cfg.patch_size=VALUE\n'))
    with pytest.raises(ValueError, match='patch_size must be an odd'):
        load_tool(tool).main([str(a) for a in arguments] + ['--debug'])
