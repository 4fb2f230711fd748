"""README.md and docs/ stay true to the tree and the command line: every relative link and image
resolves, and every `fmtrain ...` command they show parses with the current options."""

import os
import re
import shlex
from pathlib import Path

import click
import pytest

from fmtrain.cli.commands import cli

from conftest import PROJECT

PAGES = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)|<img[^>]+src=\"([^\"]+)\"")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)


def _links(page: Path):
    text = FENCE.sub("", page.read_text())  # links inside code blocks are code, not links
    for match in LINK.finditer(text):
        target = match.group(1) or match.group(2)
        if not re.match(r"[a-z]+:", target) and not target.startswith("#"):
            yield target


def _commands(page: Path):
    for block in FENCE.findall(page.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip().removeprefix("$ ")
            for part in re.split(r"&&|;|\|", line):
                part = part.split(" #")[0].strip()
                if part.startswith("fmtrain "):
                    yield part


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PROJECT)))
def test_every_relative_link_and_image_resolves(page):
    broken = [target for target in _links(page)
              if not (page.parent / target.split("#")[0]).exists()]
    assert broken == [], f"{page.relative_to(PROJECT)} links to missing files"


def test_the_pages_show_fmtrain_commands():
    assert sum(1 for page in PAGES for _ in _commands(page)) >= 10


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(PROJECT)))
def test_every_fmtrain_command_shown_parses(page):
    problems = []
    for command in _commands(page):
        words = shlex.split(command)[1:]
        if not words or words[0] in ("-h", "--help"):
            continue
        sub = cli.get_command(None, words[0])
        if sub is None:
            problems.append(f"{command}: no such command")
            continue
        try:
            with sub.make_context(words[0], words[1:]) as context:
                assert context.params is not None
        except click.exceptions.Exit:  # --help and the like
            pass
        except click.UsageError as error:
            problems.append(f"{command}: {error.format_message()}")
    assert problems == []


# The short commands the pages show are run, not only parsed: in this process (fmtrain_here, the
# command line's own main()) where they print and exit at once, and the README's quick start as a
# user types it, one cold process on the real data.
CONSOLE = re.compile(r"^```console\n\$ (fmtrain [^\n]*)\n(.*?)^```", re.M | re.S)
CHEAP = re.compile(r"^fmtrain( [a-z]+)? --help$|^fmtrain configs$|^fmtrain tune --show-space$"
                   r"|^fmtrain train --dropout_rate 1\.5$")


def _console_examples():
    """(page, command, the lines shown as its output) for each console block the pages show."""
    for page in PAGES:
        for command, shown in CONSOLE.findall(page.read_text()):
            yield page, command.split(" #")[0].strip(), shown.splitlines()


def _here(command: str):
    from conftest import fmtrain_here

    return fmtrain_here(shlex.split(command)[1:])


def test_fmtrain_help_and_every_commands_help_run():
    listed = _here("fmtrain --help")
    assert listed.returncode == 0, listed.stderr
    names = sorted(cli.list_commands(None))
    readme = (PROJECT / "README.md").read_text()
    for name in names:
        assert re.search(rf"^  {name} ", listed.stdout, re.M), f"fmtrain --help does not list {name}"
        assert f"| `fmtrain {name}" in readme, f"README's command table lacks fmtrain {name}"
        shown = _here(f"fmtrain {name} --help")
        assert shown.returncode == 0 and shown.stdout.startswith(f"Usage: fmtrain {name} "), shown.stderr


def test_the_short_commands_the_pages_show_run():
    short = sorted({command for page in PAGES for command in _commands(page) if CHEAP.match(command)})
    assert {"fmtrain configs", "fmtrain tune --show-space"} <= set(short)
    for command in short:
        result = _here(command)
        expected = 2 if "1.5" in command else 0
        assert result.returncode == expected, f"{command}: {result.stderr}"


def test_what_the_pages_show_a_short_command_print_is_what_it_prints():
    examples = [(page, command, shown) for page, command, shown in _console_examples() if CHEAP.match(command)]
    assert len(examples) >= 3
    for page, command, shown in examples:
        result = _here(command)
        printed = [line.rstrip() for line in (result.stdout + result.stderr).splitlines()]
        wanted = [line.rstrip() for line in shown if line.strip() and line.strip() != "..."]
        missing = [line for line in wanted if line not in printed]
        assert missing == [], f"{page.relative_to(PROJECT)}: `{command}` no longer prints these lines"


def _shape(line: str) -> str:
    """A line with what differs between two runs of the same command made alike: ids, numbers,
    Keras's time units."""
    line = re.sub(r"[0-9a-f]{32}", "ID", line)
    line = re.sub(r"sqlite:///\S+/mlflow\.db", "sqlite:///STORE/mlflow.db", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return re.sub(r"N(s|ms|us|µs)\b", "Nt", line)


def test_the_quick_start_prints_what_the_readme_shows(tmp_path, real_data_dir):
    from conftest import run_fmtrain

    page, command, shown = next(example for example in _console_examples()
                                if example[0].name == "README.md" and example[1].startswith("fmtrain train"))
    assert command == "fmtrain train --limit 2000 --epochs 3"
    # As the README says: an empty folder, MLflow's default store there (mlflow.db).
    env = {name: value for name, value in os.environ.items() if not name.startswith(("MLFLOW_", "FMTRAIN_"))}
    env["FMTRAIN_DATA_DIR"] = str(real_data_dir)
    result = run_fmtrain(shlex.split(command)[1:], env=env, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlflow.db").exists()
    printed = [_shape(line) for line in result.stdout.splitlines() if line.strip()]
    assert printed == [_shape(line) for line in shown if line.strip()]
    assert re.search(r"^run [0-9a-f]{32} \(early-stopping\): 3 epochs", result.stdout, re.M)
    assert f"sqlite:///{tmp_path.resolve()}/mlflow.db" in result.stdout
