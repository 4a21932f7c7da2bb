"""Checkpoint files a user can get wrong: missing, empty, truncated, not a
checkpoint, unsafe, or in another layout (bare weights; the MotionSqueeze
authors' training script's, which points to the converter). The tools end in
one line naming the file and the fix; the Python API raises its own types."""
import io

import pytest
import torch
from mmaction.registry import MODELS
from mmengine.config import Config
from mmengine.runner import Runner

from msnet_plugin.checkpoints import (check_checkpoint_file,
                                      checkpoint_layout, load_checkpoint_file)
from msnet_plugin.cli import EXIT_USER_ERROR
from msnet_plugin.errors import CheckpointFileError

from repo_paths import DEMO_CONFIG

WEIGHTS = {'backbone.conv1.conv.weight': torch.ones(2, 3, 1, 1)}


class WritesFileOnUnpickle:
    """Pickles as ``open(path, 'w')``: loading it would create ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


def saved(obj, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def bad_files(tmp_path):
    """name -> (path, the message every tool prints for it)."""
    training = saved(dict(meta=dict(epoch=1, iter=3), state_dict=WEIGHTS))
    legacy = saved(WEIGHTS, _use_new_zipfile_serialization=False)
    files = {
        'empty': b'',
        'truncated': training[:len(training) // 2],
        'truncated (legacy format)': legacy[:len(legacy) // 2],
        'a text file': b'epoch_1.pth\n',
        'unsafe': saved(dict(meta={}, state_dict=WritesFileOnUnpickle(
            tmp_path / 'written_by_the_checkpoint'))),
        'no weights': saved(dict(epoch=3, lr=0.1)),
        'authors layout': saved(dict(
            epoch=25, arch='resnet50', best_prec1=48.3, state_dict={
                f'module.base_model.{k}': v for k, v in WEIGHTS.items()})),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / (
            name.replace(' (', '_').replace(')', '').replace(' ', '_') +
            '.pth')
        paths[name].write_bytes(data)
    p = {name: str(path) for name, path in paths.items()}
    half = len(training) // 2
    return {
        'missing': (tmp_path / 'missing.pth',
                    f'checkpoint not found: {tmp_path}/missing.pth'),
        'empty': (paths['empty'], f'checkpoint {p["empty"]} is empty (0 '
                  'bytes): it was not written or copied completely; copy it '
                  'again, or use an earlier checkpoint'),
        'truncated': (paths['truncated'], f'checkpoint {p["truncated"]} is '
                      f'truncated or damaged ({half} bytes; torch.load: '
                      'RuntimeError: PytorchStreamReader failed reading zip '
                      'archive: failed finding central directory): it was '
                      'not written or copied completely; copy it again, or '
                      'use an earlier checkpoint'),
        'truncated (legacy format)': (
            paths['truncated (legacy format)'],
            f'checkpoint {p["truncated (legacy format)"]} is truncated or '
            f'damaged ({len(legacy) // 2} bytes; torch.load: the pickle ends '
            'inside the name torch._utils._rebuild_tensor_): it was not '
            'written or copied completely; copy it again, or use an earlier '
            'checkpoint'),
        'a text file': (paths['a text file'], f'checkpoint '
                        f'{p["a text file"]} is not a PyTorch file: it '
                        "starts with b'epoch_1.', not with the zip or pickle "
                        'header torch.save writes; pass the .pth file saved '
                        'by tools/train.py or torch.save'),
        'unsafe': (paths['unsafe'], f'checkpoint {p["unsafe"]} holds Python '
                   'objects that safe loading refuses to create (Unsupported '
                   'global: GLOBAL io.open was not an allowed global by '
                   'default. Please use `torch.serialization.add_safe_globals'
                   '([io.open])` or the `torch.serialization.safe_globals([io.'
                   'open])` context manager to allowlist this global if you '
                   'trust this class/function.): loading it would run code '
                   'from the file. Use checkpoints saved by tools/train.py or '
                   'a torch.save of tensors; if you trust this one, re-save '
                   'its state_dict as plain tensors'),
        'no weights': (paths['no weights'], f'checkpoint {p["no weights"]} '
                       'is not a model checkpoint: it holds a dict of epoch, '
                       'lr, with no state_dict of tensors; pass the .pth file '
                       'saved by tools/train.py'),
        'authors layout': (
            paths['authors layout'],
            f'checkpoint {p["authors layout"]} is in the MotionSqueeze '
            "authors' layout (keys module.base_model.*, entries arch and "
            "best_prec1), which the plugin's models do not read; convert it "
            'first: python tools/convert_authors_checkpoint.py '
            f'{p["authors layout"]} {tmp_path}/authors_layout_mmaction.pth '
            f'--config {DEMO_CONFIG}, then pass '
            f'{tmp_path}/authors_layout_mmaction.pth'),
    }


CASES = ['missing', 'empty', 'truncated', 'truncated (legacy format)',
         'a text file', 'unsafe', 'no weights', 'authors layout']


@pytest.mark.parametrize('case', ['missing', 'truncated', 'unsafe',
                                  'authors layout'])
def test_test_tool_names_the_file_and_the_fix_in_one_line(
        case, bad_files, tool_error, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, message = bad_files[case]
    assert tool_error('test', [DEMO_CONFIG, path, '--work-dir',
                               tmp_path / 'work']) == (
        EXIT_USER_ERROR, f'error: {message}\n')
    assert not (tmp_path / 'written_by_the_checkpoint').exists()


@pytest.mark.parametrize('case', ['truncated', 'authors layout'])
def test_the_other_tools_check_their_checkpoint_too(case, bad_files,
                                                    tool_error, tmp_path):
    path, message = bad_files[case]
    video = tmp_path / 'clip.mp4'
    video.write_bytes(b'never read')
    calls = {
        'export': [str(DEMO_CONFIG), str(path)],
        'demo': [str(DEMO_CONFIG), str(path), str(video)],
        'visualize_motion': [str(DEMO_CONFIG), str(path), str(video),
                             '--out', str(tmp_path / 'out')],
        'train': [str(DEMO_CONFIG), '--work-dir', str(tmp_path / 'work'),
                  '--cfg-options', f'load_from={path}'],
    }
    for tool, argv in calls.items():
        expected = (message if tool != 'train' else
                    message.replace('checkpoint ', 'load_from checkpoint ', 1))
        assert tool_error(tool, argv) == (EXIT_USER_ERROR,
                                          f'error: {expected}\n'), tool


def test_resume_needs_a_training_checkpoint(tmp_path, tool_error,
                                            monkeypatch):
    """Bare weights load (test, export, load_from) but cannot resume: they
    hold no epoch, iteration or optimizer state."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / 'weights.pth'
    torch.save(WEIGHTS, path)
    assert tool_error('train', [DEMO_CONFIG, '--work-dir', tmp_path / 'work',
                                '--resume', path]) == (EXIT_USER_ERROR, (
        f'error: checkpoint to resume from {path} holds weights only (no '
        'meta with the epoch and iteration, no optimizer state), so training '
        'cannot resume from it; to start a new training from these weights, '
        f'pass it as --cfg-options load_from={path} without --resume\n'))


def test_auto_resume_checks_the_checkpoint_last_checkpoint_names(
        tmp_path, tool_error, monkeypatch):
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    (work_dir / 'epoch_2.pth').write_bytes(b'')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_2.pth'))
    _, err = tool_error('train', [DEMO_CONFIG, '--work-dir', work_dir,
                                  '--resume'])
    assert err.startswith(
        f'error: checkpoint to resume from (named by {work_dir}/'
        f'last_checkpoint) {work_dir}/epoch_2.pth is empty (0 bytes)')


@pytest.mark.slow
def test_bare_weights_are_accepted_where_weights_are_loaded(tmp_path):
    """A state dict saved alone loads like mmengine's checkpoint: the
    Runner copies the same tensors in (checked by CheckpointMatchHook)."""
    model = MODELS.build(Config.fromfile(DEMO_CONFIG).model)
    path = tmp_path / 'bare.pth'
    torch.save(model.state_dict(), path)
    assert check_checkpoint_file(str(path)) == 'weights'
    cfg = Config.fromfile(DEMO_CONFIG)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.load_checkpoint(str(path))
    assert torch.equal(runner.model.cls_head.fc_cls.weight,
                       model.cls_head.fc_cls.weight)


def test_layouts():
    state = dict(WEIGHTS)
    assert checkpoint_layout(dict(meta={}, state_dict=state)) == 'training'
    assert checkpoint_layout(dict(state_dict=state)) == 'weights'
    assert checkpoint_layout(state) == 'weights'
    authors = {f'module.base_model.{k}': v for k, v in state.items()}
    assert checkpoint_layout(authors) == 'authors'
    assert checkpoint_layout(dict(state_dict=state, arch='resnet50')) == \
        'authors'
    assert checkpoint_layout(dict(epoch=1)) is None
    assert checkpoint_layout([state]) is None


def test_python_api_keeps_the_exception_types(bad_files):
    """Every case's message, as the tools print it after ``error: ``."""
    with pytest.raises(FileNotFoundError):
        load_checkpoint_file(str(bad_files['missing'][0]))
    for case in CASES[1:]:
        with pytest.raises(CheckpointFileError) as error:
            check_checkpoint_file(str(bad_files[case][0]),
                                  config=str(DEMO_CONFIG))
        assert str(error.value) == bad_files[case][1]


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_is_listed(
        tmp_path, tool_error, monkeypatch, eight_class_demo_checkpoint):
    """CheckpointMatchHook's list of differences is the one message that
    goes on after its first line."""
    monkeypatch.chdir(tmp_path)
    path = eight_class_demo_checkpoint
    options = [f'test_dataloader.dataset.{key}={value}' for key, value in (
        ('data_root', tmp_path / 'data'), ('num_videos', 4), ('size', 32),
        ('speed', 4))] + ['test_dataloader.num_workers=0',
                          'test_dataloader.persistent_workers=False']
    assert tool_error('test', [DEMO_CONFIG, path, '--work-dir',
                               tmp_path / 'work', '--cfg-options',
                               *options]) == (EXIT_USER_ERROR, (
        f'error: checkpoint {path} does not fit the model Recognizer2D:\n'
        '  2 different shapes:\n'
        '    cls_head.fc_cls.bias: checkpoint (8,) vs model (4,)\n'
        '    cls_head.fc_cls.weight: checkpoint (8, 512) vs model (4, 512)\n'
        'It was probably saved for another architecture or number of '
        "classes. To fine-tune it with a new head, add dict(type="
        "'CheckpointMatchHook', ignore_prefixes=['cls_head.']) to "
        'custom_hooks.\n'))
