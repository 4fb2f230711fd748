"""README.md and docs/ stay true to the tree and the command line: every relative link and image
resolves, and every `fmtrain ...` command they show parses with the current options."""

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
