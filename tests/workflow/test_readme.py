"""The README and the manual in docs/: every `snakemake ...` command they show dry-runs as
written, every relative link resolves (file and anchor), and the user pages hold current
facts only.

Commands are taken from fenced code blocks and inline code spans; a command chained with
`&&` or piped is cut at that point, comments are dropped. Each one runs with `-n` from a
folder that holds the repository's configs, so relative paths mean what they mean for a
user in the repository root. docs/notes/ is dated history: its links are checked, its
commands and words are not.
"""

import re
import shlex
from pathlib import Path

import pytest
from snakemake_runner import REPO, run_snakemake

README = (REPO / "README.md").read_text()
#: the pages a user reads: the README and the manual (not the dated notes)
PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "docs").rglob("*.md") if "notes" not in p.parts)]
#: every Markdown file whose links must resolve
LINKED = [*PAGES, *sorted((REPO / "docs" / "notes").rglob("*.md")), REPO / "CHANGELOG.md"]


#: options that take a value: a span ending in one names the option, it is not a command
VALUED = {"--configfile", "--configfiles", "--resources", "--report", "--cores", "--directory"}


def snakemake_commands(text: str) -> list[str]:
    chunks = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S):
        chunks += block.splitlines()
    chunks += re.findall(r"`([^`\n]*snakemake [^`\n]*)`", text)
    out = []
    for chunk in chunks:
        for part in re.split(r"&&|\|\||\||;|>", chunk):
            part = part.split(" #")[0].strip()
            if part.startswith("snakemake ") and part.split()[-1] not in VALUED:
                out.append(part)  # (`snakemake --configfile` alone is prose, not a command)
    return list(dict.fromkeys(out))


COMMANDS = list(dict.fromkeys(c for page in PAGES for c in snakemake_commands(page.read_text())))
#: these never run jobs (or, --report, need a finished run): checked for their form only
INSPECT = {"--rulegraph", "--lint", "--dag", "--unlock"}


def test_the_readme_shows_its_commands():
    readme = snakemake_commands(README)
    assert len(readme) >= 6, readme
    assert any("--configfile configs/toy.yaml" in c for c in readme)
    assert len(COMMANDS) > len(readme)  # the manual shows more


def test_the_readme_is_short():
    assert len(README.splitlines()) <= 200


def test_every_command_starts_with_an_option():
    # so that adding an option right after `snakemake` (-n, -q, -p ...) cannot swallow a target
    for cmd in COMMANDS:
        assert shlex.split(cmd)[1].startswith("-"), f"{cmd!r}: put an option before the target"


def test_no_target_follows_a_configfile_or_resources_value():
    # both options swallow every following word: a target there is read as a config file
    for cmd in COMMANDS:
        words = shlex.split(cmd)
        for opt in ("--configfile", "--resources"):
            if opt in words:
                rest = words[words.index(opt) + 2:]
                extra = rest[:next((i for i, w in enumerate(rest) if w.startswith("-")), len(rest))]
                ok = opt == "--configfile" and all(w.endswith((".yaml", ".yml")) for w in extra)
                assert not extra or ok, f"{cmd!r}: {extra[0]!r} after {opt} is swallowed"


@pytest.mark.slow
@pytest.mark.parametrize("cmd", COMMANDS)
def test_documented_command_dry_runs(cmd, tmp_path):
    for name in ("configs", "config.yaml", "profiles"):
        (tmp_path / name).symlink_to(REPO / name)
    words = shlex.split(cmd)[1:]
    if "--report" in words:
        pytest.skip("--report reads a finished run's outputs; its form is checked above")
    inspects = INSPECT & set(words)
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


def test_the_two_readme_commands_share_the_install():
    first = re.search(r"python3 -m venv [^\n]*snakemake --cores 2 --configfile configs/toy.yaml", README).group(0)
    second = re.search(r"python3 -m venv [^\n]*python -m pytest -q", README).group(0)
    install = "python3 -m venv .venv && . .venv/bin/activate && pip install -r envs/requirements.lock && " \
              "pip install --no-deps -e . && "
    assert first.startswith(install) and second.startswith(install)


# ---------------------------------------------------------------- links
def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"`|\*\*?|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    found = {slug(h) for h in re.findall(r"^#{1,6} (.+)$", text, flags=re.M)}
    return found | set(re.findall(r'<a id="([^"]+)"', text))


def links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("page", LINKED, ids=[str(p.relative_to(REPO)) for p in LINKED])
def test_every_relative_link_resolves(page):
    for link in links(page):
        if re.match(r"[a-z]+:", link):  # https:, mailto:
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        assert target.exists(), f"{page.relative_to(REPO)}: {link} -> no such file"
        if anchor and target.suffix == ".md":
            assert anchor in anchors(target), f"{page.relative_to(REPO)}: {link} -> no heading #{anchor}"


# ---------------------------------------------------------------- current facts only
#: (pattern, case-insensitive?): tracker numbers, the named suite runs of the notes, seed reports
#: by their bare number (docs/README.md defines "seed report"), remarks on how the work was done
HISTORY = [(r"\bissue\s*#?\d+", True), (r"\bissue's\b", True), (r"\b[Rr]uns? [A-E]\b", False),
           (r'(?<!")\bseed 00\d', True), (r"\bsession\b", True)]


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(REPO)) for p in PAGES])
def test_user_pages_hold_no_project_history(page):
    text = re.sub(r"<https?://[^>]+>|\(https?://[^)]+\)", "", page.read_text())
    for pattern, nocase in HISTORY:
        hit = re.search(pattern, text, flags=re.I if nocase else 0)
        assert not hit, f"{page.relative_to(REPO)}: {hit[0]!r} (dated history goes to docs/notes/)"
