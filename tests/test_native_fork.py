"""The native kernel after ``fork()``: a forked child gets the right answer, promptly.

GNU OpenMP is not fork-safe: after the parent ran a parallel region, the child's first one
waits forever for threads that do not exist in it. An at-fork handler makes every call in a
forked child run on one thread, outside any OpenMP region. Checked in a child process
(which forks a grandchild) with a deadline, so a hang fails the test instead of pytest.
"""

from __future__ import annotations

from .native_child import check_ok, child_env, run_child

FORK_AFTER_THREADED_CALL = """
import os, signal, sys, time, torch
from sharpv_kernels import visual_prune
from sharpv_kernels.ops.visual_prune.native import native_unavailable_reason, unit_distances_native
assert native_unavailable_reason() is None, native_unavailable_reason()
os.environ["SHARPV_BACKEND"] = "native"
torch.set_num_threads(2)
x = torch.randn(8, 5, 40, generator=torch.Generator().manual_seed(0))
want = unit_distances_native(x)  # two OpenMP threads: the parent's pool now exists
want_idx = visual_prune(x, [0, 3, 8]).indices
pid = os.fork()
if pid == 0:
    got = unit_distances_native(x)
    ok = all(torch.equal(a, b) for a, b in zip(got, want))
    ok = ok and torch.equal(visual_prune(x, [0, 3, 8]).indices, want_idx)
    os._exit(0 if ok else 3)
deadline = time.monotonic() + 60
while True:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    if time.monotonic() > deadline:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        print("HUNG")
        sys.exit(1)
    time.sleep(0.02)
print("CHILD EXIT", os.waitstatus_to_exitcode(status))
again = unit_distances_native(x)  # the parent still runs threaded, unchanged
print("PARENT", all(torch.equal(a, b) for a, b in zip(again, want)))
"""


def test_a_forked_child_computes_after_a_threaded_call(tmp_path):
    out = check_ok(run_child(FORK_AFTER_THREADED_CALL, child_env(tmp_path / "cache")))
    assert "CHILD EXIT 0" in out and "PARENT True" in out, out
