"""envs/requirements.lock: exact pins of every dependency, satisfying pyproject.toml's ranges."""

import subprocess
import sys
import tomllib

from conftest import REPO
from packaging.requirements import Requirement
from packaging.version import Version

sys.path.insert(0, str(REPO / "envs"))
import lock  # noqa: E402  (envs/lock.py)


def _project_requirements() -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    for extra in lock.EXTRAS:
        reqs += [Requirement(r) for r in project["optional-dependencies"][extra]]
    return reqs


def test_the_lock_pins_every_requirement_within_its_range():
    pins = lock.read()
    for req in _project_requirements():
        name = lock.canon(req.name)
        assert name in pins, f"{req.name} is required by pyproject.toml but not in the lock"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), \
            f"lock pins {name}=={pins[name]}, outside pyproject.toml's {req}"


def test_the_lock_is_exact_and_closed():
    text = (REPO / "envs" / "requirements.lock").read_text()
    lines = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    assert lines and all(ln.count("==") == 1 for ln in lines)
    assert "notpipe" not in lock.read() and "ruff" not in lock.read()


def test_this_environment_is_the_locked_one():
    """The tests run in the locked environment (the README's install), so the lock is the tested one."""
    proc = subprocess.run([sys.executable, str(REPO / "envs" / "lock.py"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, "environment differs from envs/requirements.lock (rerun envs/lock.py?):\n" + proc.stdout
