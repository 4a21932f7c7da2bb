"""The README's commands are the contract: CI runs its test command."""
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def fenced_bash_lines(markdown):
    return [
        line for block in re.findall(r'```bash\n(.*?)```', markdown, re.S)
        for line in block.splitlines()
    ]


def test_ci_runs_the_readme_test_command_exactly():
    readme_lines = fenced_bash_lines((REPO / 'README.md').read_text())
    test_commands = [line for line in readme_lines if 'pytest' in line]
    ci_commands = [
        line for line in (REPO / '.ci' / 'run').read_text().splitlines()
        if 'pytest' in line
    ]
    assert len(test_commands) == 1 and ci_commands == test_commands


def test_readme_demo_command_uses_the_demo_config_and_its_last_epoch():
    readme_lines = fenced_bash_lines((REPO / 'README.md').read_text())
    demo = [line for line in readme_lines if 'demo_synthetic' in line][0]
    assert demo.startswith('pip install torch==2.13.0 && ')
    assert (REPO / 'configs' / 'msnet_r18_demo_synthetic.py').is_file()
    assert 'work_dirs/msnet_r18_demo_synthetic/epoch_4.pth' in demo
    config = (REPO / 'configs' / 'msnet_r18_demo_synthetic.py').read_text()
    assert re.search(r'max_epochs=4\b', config)
