"""Build step for OpenMMLab's mim: a regular (non-editable) install puts
model-index.yml, configs/ and tools/ into ``msnet_plugin/.mim/``, where
``mim search / train / test msnet-plugin`` look for them (as MMAction2's
own setup.py does). The package metadata is in setup.cfg."""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
#: What mim reads, relative to the repository root and to msnet_plugin/.mim.
MIM_FILES = ('model-index.yml', 'configs', 'tools')


class BuildPyWithMimFiles(build_py):
    """build_py, then a copy of MIM_FILES into msnet_plugin/.mim/."""

    def run(self):
        super().run()
        mim_dir = Path(self.build_lib) / 'msnet_plugin' / '.mim'
        for name in MIM_FILES:
            source, target = ROOT / name, mim_dir / name
            if source.is_dir():
                shutil.copytree(
                    source, target, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)


setup(cmdclass={'build_py': BuildPyWithMimFiles})
