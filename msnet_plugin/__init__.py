"""MotionSqueeze (MSNet, Kwon et al., ECCV 2020) for MMAction2.

Importing this package (directly, or through a config's
``custom_imports = dict(imports=['msnet_plugin'])``) applies the
compatibility workarounds the installed packages need
(:mod:`msnet_plugin.compat`), then registers the plugin's models, datasets,
hooks, optimizer wrapper and the ``atomic_local`` file backend in
MMAction2's and mmengine's registries. It changes nothing else.
"""
try:
    import mmcv  # noqa: F401  (mmaction2 needs it; say how to install it)
except ImportError:
    raise ImportError(
        'msnet_plugin needs mmcv, which is not installed: on CPU run '
        '`pip install -e ".[lite]"` (mmcv-lite 2.1.0) in the plugin folder; '
        'on CUDA install full mmcv 2.1.x for your torch '
        '(`mim install "mmcv==2.1.0"`).') from None

from . import compat

compat.apply()

from . import datasets, fileio, hooks, models, optim  # noqa: E402,F401

__version__ = '0.1.0'
