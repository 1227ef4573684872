"""The package's shape: no import cycles, imports only downward, modules and functions of a
readable size, one installed top-level package, and every command's `--help`."""

from __future__ import annotations

import configparser
import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.import_graph import cycles, import_graph
from tests.helpers.shape import code_lines, function_sizes

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PACKAGE = os.path.join(REPO, "tf_deraindrop")

# Lower layers never import higher ones. Modules of one layer may import each
# other (without cycles). The entry points (`tf_deraindrop.train`, ...) and
# `tf_deraindrop.cli` sit on top.
LAYERS = [
    ["utils", "weights"],
    ["layers"],
    ["models"],
    ["losses", "metrics", "official"],
    ["data"],
    ["inference"],
    ["video"],
    ["synthetic"],
    ["training"],
    ["export"],
    ["app"],
    ["cli"],
]
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package's own __init__: lazy public API
    if parts[-1] == "__main__":
        return len(LAYERS)  # `python -m tf_deraindrop.X`: an entry point, on top
    for rank, names in enumerate(LAYERS):
        if parts[1] in names:
            return rank
    return len(LAYERS)  # the `python -m tf_deraindrop.X` entry points


def test_the_package_has_no_import_cycle():
    found = cycles(import_graph(PACKAGE, "tf_deraindrop"))
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle(tmp_path):
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "a.py").write_text("from pkg.sub import b\n")
    (root / "sub" / "b.py").write_text("def f():\n    from pkg import c\n")
    (root / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(str(root), "pkg")) == [["pkg.a", "pkg.c", "pkg.sub.b"]]
    (root / "c.py").write_text("import os\n")
    assert cycles(import_graph(str(root), "pkg")) == []


def test_imports_go_only_downward():
    upward = []
    for module, targets in import_graph(PACKAGE, "tf_deraindrop").items():
        rank = _layer(module)
        for target in targets:
            other = _layer(target)
            if rank is not None and other is not None and other > rank:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(sorted(upward))


def _python_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [p for p in listed if os.path.isfile(os.path.join(REPO, p))]


def test_no_module_or_function_is_too_long():
    long = []
    for path in _python_files():
        with open(os.path.join(REPO, path), encoding="utf-8") as f:
            source = f.read()
        lines = len(code_lines(source))
        if lines > MAX_MODULE_LINES:
            long.append(f"{path}: {lines} code lines")
        for name, line, size in function_sizes(source):
            if size > MAX_FUNCTION_LINES:
                long.append(f"{path}:{line} {name}: {size} code lines")
    assert not long, "over the size limits:\n" + "\n".join(long)


def test_the_size_count_leaves_out_docstrings_and_comments():
    source = textwrap.dedent(
        '''
        """Module docstring."""


        def f(x):
            """Docstring,
            two lines."""
            # a comment
            y = (x +
                 1)
            return y
        '''
    )
    assert function_sizes(source) == [("f", 5, 4)]
    assert len(code_lines(source)) == 4


def test_setup_installs_one_top_level_package():
    config = configparser.ConfigParser()
    config.read(os.path.join(REPO, "setup.cfg"))
    include = config["options.packages.find"]["include"].split()
    assert include == ["tf_deraindrop*"]
    scripts = config["options.entry_points"]["console_scripts"].strip().splitlines()
    assert scripts == ["deraindrop = tf_deraindrop.cli:main"]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_deraindrop_help_lists_every_subcommand():
    from tf_deraindrop.cli import COMMANDS

    result = _run("-m", "tf_deraindrop", "--help")
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ")}
    assert listed == set(COMMANDS)
    unknown = _run("-m", "tf_deraindrop", "rain-dance")
    assert unknown.returncode == 2 and "unknown command 'rain-dance'" in unknown.stderr


@pytest.mark.parametrize("command", ["predict", "export", "synthesize"])
def test_a_subcommand_answers_its_own_help(command):
    result = _run("-m", "tf_deraindrop", command, "--help")
    assert result.returncode == 0, result.stderr
    assert f"usage: deraindrop {command}" in result.stdout or "usage:" in result.stdout


@pytest.mark.parametrize("tool", ["train", "predict", "evaluate", "distill", "convert_official"])
def test_the_python_m_entry_points_keep_working(tool):
    result = _run("-m", f"tf_deraindrop.{tool}", "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout
