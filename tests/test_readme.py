"""The README and docs/ are a contract: CI runs the README's test command,
every link leads somewhere, every tool command names a real tool, config
and flags, and nothing points outside the repository."""
import argparse
import configparser
import fnmatch
import hashlib
import importlib.util
import os
import re
import shlex
from pathlib import Path

import pytest

from repo_paths import DEMO_CONFIG, REPO

README = REPO / 'README.md'
README_LIMIT = 15_000
DOC_PAGES = sorted((REPO / 'docs').glob('*.md'))

#: sha256 of the Apache License 2.0 terms ("TERMS AND CONDITIONS FOR USE" to
#: "END OF TERMS AND CONDITIONS"), whitespace collapsed to single spaces.
APACHE_2_TERMS_SHA256 = (
    'b316b715c7f48af32f6265b3de80b9656fdbddc57f5854215c8a4c6e0ad42c05')

LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)(?:\s+"[^"]*")?\)')
FENCE = re.compile(r'^```.*?^```', re.S | re.M)


def fenced_bash_lines(markdown):
    return [
        line for block in re.findall(r'```bash\n(.*?)```', markdown, re.S)
        for line in block.splitlines()
    ]


def markdown_files():
    return [README] + DOC_PAGES


def relative(path):
    return path.relative_to(REPO).as_posix()


def github_anchors(markdown):
    """The anchors GitHub gives the headings of a page (code blocks
    excluded): lower case, punctuation dropped, spaces to hyphens, repeats
    numbered -1, -2, ..."""
    anchors, seen = set(), {}
    for heading in re.findall(r'^#{1,6}\s+(.*?)\s*#*$',
                              FENCE.sub('', markdown), re.M):
        slug = re.sub(r'[^\w\- ]', '', heading.strip().lower()).replace(
            ' ', '-')
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f'{slug}-{count}')
    return anchors


def relative_links(path):
    """(target file, anchor) of every relative link outside code blocks."""
    links = []
    for target in LINK.findall(FENCE.sub('', path.read_text())):
        if re.match(r'^[a-z][a-z0-9+.-]*:', target) or target.startswith('//'):
            continue  # http(s), mailto: the web, not the repository
        file_part, _, anchor = target.partition('#')
        resolved = (path.parent / file_part).resolve() if file_part else path
        links.append((resolved, anchor))
    return links


def tool_commands():
    """(file, command tokens) of every `python tools/X.py ...` and
    `bash tools/X.sh ...` in a bash block, one per `&&` part; environment
    assignments, comments and the brackets of optional parts dropped."""
    commands = []
    for path in markdown_files():
        for line in fenced_bash_lines(path.read_text()):
            line = line.split(' #')[0]
            if line.lstrip().startswith('#'):
                continue
            for part in line.split('&&'):
                tokens = shlex.split(part.replace('[', ' ').replace(']', ' '))
                while tokens and re.match(r'^[A-Z_][A-Z0-9_]*=', tokens[0]):
                    tokens.pop(0)
                if (len(tokens) >= 2 and tokens[0] in ('python', 'bash')
                        and tokens[1].startswith('tools/')):
                    commands.append((relative(path), tokens))
    return commands


class _ParserFound(Exception):

    def __init__(self, parser):
        super().__init__()
        self.parser = parser


def tool_parser(tool_name, monkeypatch):
    """The argparse parser of tools/<tool_name>.py, taken at the moment its
    parse_args would parse, so that checks the tool makes afterwards (files
    that exist) do not run."""
    spec = importlib.util.spec_from_file_location(
        f'docs_tool_{tool_name}', REPO / 'tools' / f'{tool_name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def capture(parser, args=None, namespace=None):
        raise _ParserFound(parser)

    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, 'parse_args', capture)
        with pytest.raises(_ParserFound) as found:
            module.parse_args([])
    return found.value.parser


def test_ci_runs_the_readme_test_command_exactly():
    readme_lines = fenced_bash_lines(README.read_text())
    test_commands = [line for line in readme_lines if 'pytest' in line]
    ci_commands = [
        line for line in (REPO / '.ci' / 'run').read_text().splitlines()
        if 'pytest' in line
    ]
    assert len(test_commands) == 1 and ci_commands == test_commands


def test_readme_demo_command_uses_the_demo_config_and_its_last_epoch():
    readme_lines = fenced_bash_lines(README.read_text())
    demo = [line for line in readme_lines if 'demo_synthetic' in line][0]
    assert demo.startswith('pip install torch==2.13.0 && ')
    assert DEMO_CONFIG.is_file()
    assert 'work_dirs/msnet_r18_demo_synthetic/epoch_4.pth' in demo
    config = DEMO_CONFIG.read_text()
    assert re.search(r'max_epochs=4\b', config)


def test_readme_is_at_most_15000_characters():
    length = len(README.read_text())
    assert length <= README_LIMIT, (
        f'README.md has {length} characters, over {README_LIMIT}: move '
        'details into a page under docs/ and link to it')


def test_every_relative_link_leads_to_a_file_and_heading_of_the_repo():
    problems = []
    for path in markdown_files():
        for target, anchor in relative_links(path):
            if REPO not in target.parents and target != REPO:
                problems.append(f'{relative(path)}: {target} is outside '
                                'the repository')
                continue
            name = relative(target)
            if not target.exists():
                problems.append(f'{relative(path)}: {name} does not exist')
            elif anchor and target.suffix == '.md' and anchor not in (
                    github_anchors(target.read_text())):
                problems.append(f'{relative(path)}: {name} has no heading '
                                f'#{anchor}')
    assert not problems, '\n'.join(problems)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {target for target, _ in relative_links(README)}
    unlinked = [relative(page) for page in DOC_PAGES if page not in linked]
    assert not unlinked, f'not linked from README.md: {unlinked}'


def test_the_link_checker_catches_a_missing_file_and_heading(tmp_path):
    page = tmp_path / 'page.md'
    page.write_text('# A heading: the `first` (one)\n\n```bash\n# comment\n'
                    '```\n[ok](#a-heading-the-first-one) [gone](nowhere.md) '
                    '[web](https://example.org/x.md)\n')
    assert github_anchors(page.read_text()) == {'a-heading-the-first-one'}
    assert relative_links(page) == [(page, 'a-heading-the-first-one'),
                                    (tmp_path / 'nowhere.md', '')]


def test_every_tool_command_names_a_tool_config_and_flags_that_exist(
        monkeypatch):
    commands = tool_commands()
    assert len(commands) >= 20, commands  # the parser found the commands
    parsers, problems = {}, []
    for page, tokens in commands:
        shown = ' '.join(tokens)
        tool = REPO / tokens[1]
        if not tool.is_file():
            problems.append(f'{page}: {tokens[1]} does not exist: {shown}')
            continue
        for token in tokens[2:]:
            if token.startswith('configs/') and not (REPO / token).is_file():
                problems.append(f'{page}: {token} does not exist: {shown}')
        if tokens[0] == 'python':
            if tool.stem not in parsers:
                parsers[tool.stem] = tool_parser(tool.stem, monkeypatch)
            try:
                parsers[tool.stem].parse_args(tokens[2:])
            except SystemExit:
                problems.append(f'{page}: {tokens[1]} rejects the arguments '
                                f'(see its usage above): {shown}')
    assert not problems, '\n'.join(problems)


def gitignored(relative, is_dir, patterns):
    """Whether a path (relative to REPO, '/'-separated) matches one of these
    .gitignore patterns (``name``, ``*.ext``, ``dir/``, ``/anchored``)."""
    for pattern in patterns:
        if pattern.endswith('/') and not is_dir:
            continue
        name = relative if pattern.startswith('/') else relative.split('/')[-1]
        if fnmatch.fnmatch(name, pattern.strip('/')):
            return True
    return False


def repository_files():
    """The repository's files (as in a clone, a source archive or a copy,
    no git needed): every file under REPO but git's own (``.git``, a folder
    or a worktree's file) and those that .gitignore excludes."""
    patterns = [
        line.strip() for line in (REPO / '.gitignore').read_text().splitlines()
        if line.strip() and not line.startswith('#')
    ]
    files = []
    for folder, subfolders, names in os.walk(REPO):
        relative_folder = Path(folder).relative_to(REPO).as_posix()
        prefix = '' if relative_folder == '.' else f'{relative_folder}/'
        subfolders[:] = [
            name for name in subfolders if name != '.git'
            and not gitignored(prefix + name, True, patterns)
        ]
        files += [
            prefix + name for name in names if name != '.git'
            and not gitignored(prefix + name, False, patterns)
        ]
    return files


def test_no_file_outside_tests_cites_the_spec_file_outside_the_repository():
    citing = []
    for name in repository_files():
        if name.startswith('tests/'):
            continue
        if b'MSNET_SPEC' in (REPO / name).read_bytes():
            citing.append(name)
    assert not citing, (f'{citing} cite MSNET_SPEC.md, a file outside the '
                        'repository: cite the paper (Kwon et al., ECCV 2020)')


def test_license_is_the_apache_2_text_that_setup_cfg_names():
    setup = configparser.ConfigParser()
    setup.read(REPO / 'setup.cfg')
    assert setup['metadata']['license'] == 'Apache-2.0'
    text = (REPO / 'LICENSE').read_text()
    assert text.lstrip().startswith(
        'Apache License\n                           Version 2.0, January 2004')
    start = text.index('TERMS AND CONDITIONS FOR USE')
    end = text.index('END OF TERMS AND CONDITIONS') + len(
        'END OF TERMS AND CONDITIONS')
    terms = ' '.join(text[start:end].split())
    assert hashlib.sha256(terms.encode()).hexdigest() == APACHE_2_TERMS_SHA256
    assert 'APPENDIX: How to apply the Apache License to your work' in text
    assert '[yyyy]' not in text and 'msnet-plugin authors' in text
