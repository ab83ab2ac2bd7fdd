"""Without a home folder the native kernel still works, from a private per-user folder.

A service account may have no ``HOME`` and no passwd entry (``Path.home()`` raises there).
The cache is then ``sharpv-<uid>`` in the temporary folder, created 0700 and used only if
it is this user's own and private (``test_native_cache_trust.py`` squats it).
"""

from __future__ import annotations

import os

import pytest

from .native_child import LOAD_AND_RUN, check_ok, child_env, lines, run_child

#: the child forgets its passwd entry before anything asks for it
NO_PASSWD = """
import pwd
def _no_entry(uid):
    raise KeyError(f"getpwuid(): uid not found: {uid}")
pwd.getpwuid = _no_entry
"""


@pytest.mark.parametrize("how", ["no HOME and no passwd entry", "HOME is no folder"])
def test_no_home_folder_uses_a_private_temporary_folder(tmp_path, how):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    os.chmod(tmp, 0o1777)  # shared, like /tmp
    if how == "HOME is no folder":
        env, code = child_env(None, HOME=str(tmp_path / "missing"), TMPDIR=str(tmp)), LOAD_AND_RUN
    else:
        env, code = child_env(None, HOME=None, TMPDIR=str(tmp)), NO_PASSWD + LOAD_AND_RUN
    out = check_ok(run_child(code, env))
    assert "OK" in out and "SAME" in out and not lines(out, "WARNING"), out
    private = tmp / f"sharpv-{os.geteuid()}"
    assert private.stat().st_mode & 0o777 == 0o700
    assert len(list(private.glob("native_scores-*.so"))) == 1
    assert not (tmp_path / "missing").exists()
