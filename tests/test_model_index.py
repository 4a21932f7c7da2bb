"""The model index (model-index.yml -> configs/metafile.yml, MMAction2's
format) and what OpenMMLab's mim does with it after a regular install:
``mim search / train / test msnet-plugin``."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.fileio import load

from repo_paths import REPO
CONFIGS = sorted(
    path for path in list((REPO / 'configs').glob('*.py')) +
    list((REPO / 'configs' / 'paper').glob('*.py')))


def models():
    index = load(REPO / 'model-index.yml')
    assert index == dict(Import=['configs/metafile.yml'])
    return load(REPO / 'configs' / 'metafile.yml')


def test_metafile_names_every_config_once_with_its_metadata():
    metafile = models()
    (collection, ) = metafile['Collections']
    assert collection['Name'] == 'MSNet'
    assert collection['Paper']['URL'] == 'https://arxiv.org/abs/2007.09933'
    entries = metafile['Models']
    assert sorted(entry['Config'] for entry in entries) == sorted(
        path.relative_to(REPO).as_posix() for path in CONFIGS)
    for entry in entries:
        assert entry['Name'] == Path(entry['Config']).stem
        assert entry['In Collection'] == 'MSNet'
        assert 'Weights' not in entry  # no checkpoints published yet
        assert {'Architecture', 'Frames', 'FLOPs', 'Parameters',
                'Training Data', 'Resolution'} <= entry['Metadata'].keys()
        for result in entry.get('Results', []):
            assert all(name.endswith('(paper)') for name in result['Metrics'])


def test_paper_accuracy_only_on_the_configs_of_the_papers_rows():
    with_results = {
        entry['Name'] for entry in models()['Models'] if 'Results' in entry
    }
    assert with_results and all(
        'r50' in name and 'from_tsm' not in name and 'neck' not in name
        and 'trnhead' not in name for name in with_results)


def get_flops_figures(load_tool, entry):
    """(FLOPs, Parameters) as the metafile writes them, from
    tools/get_flops.py at the entry's resolution and frames."""
    size = entry['Metadata']['Resolution'].split('x')[0]
    info = load_tool('get_flops').main([
        str(REPO / entry['Config']), '--shape', size, '--num-frames',
        str(entry['Metadata']['Frames'])
    ])
    return f'{info["flops"] / 1e9:.3f}G', f'{info["params"] / 1e6:.3f}M'


def counted_model(entry):
    """What get_flops' figures depend on: the model's config, the
    resolution and the frames. Configs that differ only in data or
    schedule (sthv1 and sthv2, a recipe and its paper twin) share it."""
    model = Config.fromfile(REPO / entry['Config']).model.to_dict()
    return (repr(model), entry['Metadata']['Resolution'],
            entry['Metadata']['Frames'])


@pytest.mark.slow
def test_metafile_params_and_flops_are_get_flops_figures(load_tool):
    figures, wrong = {}, []  # each distinct model is counted once
    for entry in models()['Models']:
        model = counted_model(entry)
        if model not in figures:
            figures[model] = get_flops_figures(load_tool, entry)
        written = (entry['Metadata']['FLOPs'],
                   entry['Metadata']['Parameters'])
        if figures[model] != written:
            wrong.append(f'{entry["Name"]}: metafile {written}, '
                         f'get_flops {figures[model]}')
    assert not wrong, '\n'.join(wrong)


@pytest.mark.slow
def test_regular_install_serves_mim_search_train_and_test(
        tmp_path, small_demo_options):
    """``pip install .`` (not editable) ships model-index.yml, configs/ and
    tools/ in msnet_plugin/.mim, so mim finds the models and configs by
    name. (Installed into a --target folder put first on PYTHONPATH.)"""
    pytest.importorskip('mim')
    site = tmp_path / 'site'
    subprocess.run([
        sys.executable, '-m', 'pip', 'install', '-q', '--no-deps',
        '--target', str(site), str(REPO)
    ], check=True, capture_output=True)
    assert (site / 'msnet_plugin' / '.mim' / 'model-index.yml').is_file()
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONWARNINGS='ignore')

    def mim(*args):
        result = subprocess.run([sys.executable, '-m', 'mim', *map(str, args)],
                                cwd=tmp_path, env=env, capture_output=True,
                                text=True, timeout=1800)
        assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
        return result.stdout

    listing = mim('search', 'msnet-plugin')
    for config in CONFIGS:
        assert f'config id: {config.stem}\n' in listing
    assert '33.401g' in listing  # the metadata, lower-cased by mim

    options = small_demo_options(tmp_path / 'data')
    trained = mim('train', 'msnet-plugin', 'msnet_r18_demo_synthetic.py',
                  '--work-dir', 'work', '--cfg-options', *options)
    installed = site / 'msnet_plugin' / '.mim'
    assert f'{installed}/tools/train.py' in trained
    assert (tmp_path / 'work' / 'epoch_1.pth').is_file()
    tested = mim('test', 'msnet-plugin', 'msnet_r18_demo_synthetic.py',
                 '--checkpoint', 'work/epoch_1.pth', '--work-dir', 'test',
                 '--cfg-options', *options)
    assert f'{installed}/tools/test.py' in tested
