"""Shared test set-up: every test starts in mmaction's registry scope, and
the global instances a Runner makes current (default scope, message hub,
logger, visualizer) are forgotten after each test, so that one test's Runner
cannot change what the next test builds."""
import collections

import pytest
from mmengine.logging import MessageHub, MMLogger
from mmengine.registry import DefaultScope, init_default_scope
from mmengine.visualization import Visualizer

import msnet_plugin  # noqa: F401  (compat fixes, then registration)


@pytest.fixture(autouse=True)
def isolated_mmengine_globals(monkeypatch):
    for manager in (DefaultScope, MessageHub, MMLogger, Visualizer):
        monkeypatch.setattr(manager, '_instance_dict',
                            collections.OrderedDict(manager._instance_dict))
    init_default_scope('mmaction')
