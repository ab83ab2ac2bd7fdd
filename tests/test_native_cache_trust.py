"""The native kernel's cache is a trust boundary: planted libraries never load.

A library is loaded only from a folder owned by this user and writable by nobody else, only
if the file itself is, and only if its bytes hash to the name they were published under.
Each scenario plants a library whose constructor leaves a marker file (``PLANTED_C``): a
refused folder makes the kernel unavailable (``auto`` runs PyTorch, warning once;
``native`` raises, naming the folder); a refused file in a trusted folder is removed and
rebuilt. A missing home folder never means a shared temporary folder: the per-user one must
be private, or it is refused too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from .native_child import (
    LOAD_AND_RUN,
    THEN_NATIVE,
    check_ok,
    child_env,
    compile_planted,
    lines,
    run_child,
)

IS_ROOT = os.geteuid() == 0

#: loads the kernel (the OpenMP variant only, as a first build makes it) from every cache
#: folder in the JSON list argv[1], printing one JSON outcome per folder
LOAD_EACH = """
import json, os, sys, warnings
from sharpv_kernels._native import NativeUnavailable, load_library
from sharpv_kernels.ops.visual_prune.native import SYMBOLS
for case in json.loads(sys.argv[1]):
    os.environ.update(case["env"])
    for k in case.get("unset", []):
        os.environ.pop(k, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            lib = load_library("sharpv_kernels.ops.visual_prune", "native_scores.c",
                               (("-fopenmp",),), SYMBOLS)
            out = {"loaded": lib._name}
        except NativeUnavailable as e:
            out = {"refused": str(e)}
    out["warnings"] = [str(w.message) for w in caught]
    print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> tuple[Path, str]:
    """A cache folder holding one library built by a child process, and its file name
    prefix (``native_scores-<key>-``)."""
    cache = tmp_path_factory.mktemp("template") / "cache"
    out = check_ok(run_child(LOAD_AND_RUN, child_env(cache)))
    assert "OK" in lines(out, "OK") and "SAME" in out, out
    (lib,) = cache.glob("native_scores-*.so")
    return cache, lib.name[: lib.name.rindex("-") + 1]


def _planted_name(prefix: str, planted: Path) -> str:
    """The name under which the loader would take ``planted`` for its own build."""
    return f"{prefix}{hashlib.sha256(planted.read_bytes()).hexdigest()}.so"


def _cache_with_planted(tmp: Path, template: tuple[Path, str], planted: Path, name: str) -> Path:
    """A copy of the template cache whose only library is ``planted`` under ``name``."""
    cache = tmp / name
    shutil.copytree(template[0], cache)
    for lib in cache.glob("*.so"):
        lib.unlink()
    return cache


def test_planted_libraries_are_refused(tmp_path, template):
    planted = compile_planted(tmp_path)
    prefix = template[1]
    good_name = _planted_name(prefix, planted)
    (legit,) = template[0].glob("*.so")
    cases: dict[str, dict] = {}

    def plant(case: str, name: str, mode: int = 0o700) -> Path:
        cache = _cache_with_planted(tmp_path, template, planted, case)
        shutil.copy(planted, cache / name)
        os.chmod(cache / name, mode)
        cases[case] = {"env": {"SHARPV_CACHE_DIR": str(cache),
                               "PLANTED_MARKER": str(tmp_path / f"marker-{case}")}}  # fmt: skip
        return cache

    os.chmod(plant("world_writable_folder", good_name), 0o777)
    os.chmod(plant("group_writable_folder", good_name), 0o770)
    plant("group_writable_file", good_name, 0o620)
    plant("world_writable_file", good_name, 0o606)
    plant("content_not_built", legit.name)  # the planted bytes under the real build's name
    if IS_ROOT:
        cache = plant("foreign_file", good_name)
        os.chown(cache / good_name, 65534, 65534)
        cache = plant("foreign_folder", good_name)
        os.chown(cache, 65534, 65534)
    # no home folder: the per-user temporary folder, squatted with a shared folder or a link
    for kind in ("shared", "link"):
        tmpdir = tmp_path / f"tmp-{kind}"
        tmpdir.mkdir(mode=0o1777)
        os.chmod(tmpdir, 0o1777)
        squat = tmpdir / f"sharpv-{os.geteuid()}"
        if kind == "shared":
            squat.mkdir()
            os.chmod(squat, 0o777)
        else:
            target = _cache_with_planted(tmp_path, template, planted, "link-target")
            os.chmod(target, 0o777)
            squat.symlink_to(target)
            squat = target
        shutil.copy(planted, squat / good_name)
        (tmpdir / "sharpv").mkdir()  # the old shared path, planted too
        shutil.copy(planted, tmpdir / "sharpv" / legit.name)
        cases[f"tmp_{kind}"] = {"env": {"TMPDIR": str(tmpdir), "HOME": str(tmp_path / "none"),
                                        "PLANTED_MARKER": str(tmp_path / f"marker-tmp_{kind}")},
                                "unset": ["SHARPV_CACHE_DIR"]}  # fmt: skip

    res = run_child(LOAD_EACH, child_env(None), argv=(json.dumps(list(cases.values())),))
    outcomes = dict(zip(cases, map(json.loads, check_ok(res).splitlines()), strict=True))
    expect_refused = {
        "world_writable_folder": "writable by other users (mode 0777)",
        "group_writable_folder": "writable by other users (mode 0770)",
        "foreign_folder": "owned by uid 65534",
        "tmp_shared": "is not a private folder",
        "tmp_link": "is not a private folder",
    }
    expect_rebuilt = {
        "group_writable_file": "writable by other users",
        "world_writable_file": "writable by other users",
        "content_not_built": "does not hash to its name",
        "foreign_file": "owned by uid 65534",
    }
    for case, out in outcomes.items():
        assert not (tmp_path / f"marker-{case}").exists(), f"{case}: the planted code ran"
        if case in expect_refused:
            assert expect_refused[case] in out.get("refused", ""), (case, out)
        else:
            assert out.get("loaded", "").startswith(cases[case]["env"]["SHARPV_CACHE_DIR"])
            assert not out["loaded"].endswith(good_name), (case, out)
            msgs = [w for w in out["warnings"] if expect_rebuilt[case] in w]
            assert len(msgs) == 1 and "rebuilding" in msgs[0], (case, out)


def test_a_refused_folder_means_pytorch_under_auto_and_an_error_under_native(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    os.chmod(cache, 0o777)
    out = check_ok(run_child(LOAD_AND_RUN + THEN_NATIVE, child_env(cache)))
    (warning,) = lines(out, "WARNING")  # once, though the op ran twice
    assert str(cache) in warning and "writable by other users" in warning
    assert "SAME" in out
    (err,) = lines(out, "NATIVE_ERROR")
    assert str(cache) in err and "mode 0777" in err
    assert os.listdir(cache) == []  # nothing was written into it


@pytest.mark.parametrize("origin", ["env", "default"])
def test_folders_are_private_whatever_the_umask(tmp_path, origin):
    """``umask 000``: the folders made are 0700 and the library is writable by its owner
    only."""
    if origin == "env":
        env, top = child_env(tmp_path / "a" / "b" / "c"), tmp_path / "a"
        made = [top, top / "b", top / "b" / "c"]
    else:
        home = tmp_path / "home"
        home.mkdir()
        env, made = child_env(None, HOME=str(home)), [home / ".cache", home / ".cache/sharpv"]
    out = check_ok(run_child("import os\nos.umask(0)\n" + LOAD_AND_RUN, env))
    assert "OK" in out and "SAME" in out
    for folder in made:
        assert oct(folder.stat().st_mode & 0o777) == oct(0o700), folder
    (lib,) = made[-1].glob("*.so")
    assert lib.stat().st_mode & 0o077 == 0
    assert not [p for p in made[-1].iterdir() if p.suffix != ".so"]  # no build leftovers


@pytest.mark.parametrize("rel", [".", "rel/cache"])
def test_a_relative_cache_folder_is_made_absolute(tmp_path, rel):
    cwd = tmp_path / "cwd"
    cwd.mkdir(mode=0o700)
    os.chmod(cwd, 0o700)
    out = check_ok(run_child(LOAD_AND_RUN, child_env(Path(rel)), cwd=cwd))
    assert "OK" in out and "SAME" in out
    assert len(list((cwd / rel).glob("native_scores-*.so"))) == 1
