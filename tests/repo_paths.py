"""Paths in the repository that several test files read.

The test files import them (``from repo_paths import DEMO_CONFIG``): tests/
is on ``sys.path`` (``pythonpath = tests`` in setup.cfg's pytest section).
"""
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / 'configs' / 'msnet_r18_demo_synthetic.py'  # 4 classes
STHV1_CONFIG = REPO / 'configs' / 'msnet_tsm_r50_sthv1.py'  # rawframes, 174
STHV2_CONFIG = REPO / 'configs' / 'msnet_tsm_r50_sthv2.py'  # videos, 174
HMDB51_CONFIG = REPO / 'configs' / 'msnet_tsm_r50_hmdb51_ft.py'
