"""The host libraries sharpv-kernels patches or plugs into, and the releases CI tested.

One table, :data:`TESTED`, read by the import-time check (:func:`warn_if_untested`) and by the
errors that name the installed version (:func:`describe`). ``setup.py`` declares the same
bounds (a test keeps the two equal).

Examples:
    >>> from sharpv.hosts import TESTED
    >>> TESTED["transformers"]
    ('4.57', '5.26')
"""

from __future__ import annotations

from importlib import metadata

__all__ = ["TESTED", "describe", "installed"]

#: distribution -> (lowest tested release, first untested minor): ``lo <= version < hi``
TESTED: dict[str, tuple[str, str]] = {
    "transformers": ("4.57", "5.26"),
}


def installed(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or ``None``."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def describe(dist: str) -> str:
    """``"transformers 5.25.0 is installed; tested: >=4.57,<5.26"``, for error messages."""
    lo, hi = TESTED[dist]
    return f"{dist} {installed(dist) or '(not installed)'} is installed; tested: >={lo},<{hi}"
