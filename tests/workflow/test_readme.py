"""Every `snakemake ...` command that README.md shows dry-runs as written (issue 12).

Commands are taken from fenced code blocks and inline code spans; a command
chained with `&&` or piped is cut at that point, comments are dropped. Each one
runs with `-n` from a folder that holds the repository's configs, so relative
paths mean what they mean for a user in the repository root.
"""

import re
import shlex

import pytest
from snakemake_runner import REPO, run_snakemake

README = (REPO / "README.md").read_text()


def snakemake_commands(text: str) -> list[str]:
    chunks = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        chunks += block.splitlines()
    chunks += re.findall(r"`([^`\n]*snakemake [^`\n]*)`", text)
    out = []
    for chunk in chunks:
        for part in re.split(r"&&|\|\||\||;|>", chunk):
            part = part.split(" #")[0].strip()
            if part.startswith("snakemake "):
                out.append(part)
    return list(dict.fromkeys(out))


COMMANDS = snakemake_commands(README)


def test_the_readme_shows_its_commands():
    assert len(COMMANDS) >= 6, COMMANDS
    assert any("--configfile configs/toy.yaml" in c for c in COMMANDS)


def test_every_command_starts_with_an_option():
    # so that adding an option right after `snakemake` (-n, -q, -p ...) cannot swallow a target
    for cmd in COMMANDS:
        assert shlex.split(cmd)[1].startswith("-"), f"{cmd!r}: put an option before the target"


def test_no_word_follows_a_configfile_or_resources_value():
    # both options swallow every following word: a target there is read as a config file
    for cmd in COMMANDS:
        words = shlex.split(cmd)
        for opt in ("--configfile", "--resources"):
            if opt in words:
                rest = words[words.index(opt) + 2:]
                assert not rest or rest[0].startswith("-"), f"{cmd!r}: {rest[0]!r} after {opt} is swallowed"


@pytest.mark.slow
@pytest.mark.parametrize("cmd", COMMANDS)
def test_readme_command_dry_runs(cmd, tmp_path):
    for name in ("configs", "config.yaml", "profiles"):
        (tmp_path / name).symlink_to(REPO / name)
    words = shlex.split(cmd)[1:]
    inspects = {"--rulegraph", "--lint", "--dag"} & set(words)  # these never run jobs
    if not inspects:
        words = ["-n", "-q", "rules", *words]  # options first, as a user adding flags would
    proc = run_snakemake(*words, cwd=tmp_path)  # raises with snakemake's output on failure
    out = proc.stdout + proc.stderr
    assert inspects or "This was a dry-run" in out or "Nothing to be done" in out, out[-2000:]


def test_ci_runs_the_readme_s_test_command():
    cmd = re.search(r"python3 -m venv \.venv && [^\n]*python -m pytest -q", README).group(0)
    ci = (REPO / ".ci" / "run").read_text().replace("\\\n", " ")
    ci = re.sub(r"pip install -q ", "pip install ", re.sub(r"\s+", " ", ci))
    for part in cmd.split(" && "):
        assert part.strip() in ci, f".ci/run lacks the README's {part.strip()!r}"
    assert "envs/requirements.lock" in cmd  # the README installs the tested versions
