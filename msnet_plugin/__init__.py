"""MotionSqueeze (MSNet, ECCV 2020) for MMAction2.

Importing this package (directly, or through a config's
``custom_imports = dict(imports=['msnet_plugin'])``) first applies the
compatibility workarounds in :mod:`msnet_plugin.compat`, then registers the
plugin's models, datasets and hooks in MMAction2's registries.
"""
from . import compat

compat.apply()

from . import datasets, hooks, models, optim  # noqa: E402,F401  (registers in mmaction's registries)

__version__ = '0.1.0'
