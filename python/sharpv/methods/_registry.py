"""The registry of pruning methods: built-ins, user methods and entry-point plug-ins.

Every method, built-in or not, is added with :func:`register`. Third-party packages declare
an entry point in the group ``sharpv.methods`` whose object is a :class:`Method` (registered
here), or a module or function that registers its methods itself when loaded or called; the
group is read once, at the first lookup. Modules named in the environment variable
``SHARPV_METHOD_MODULES`` (comma-separated) are imported at the same moment: the way to make a
method that is not packaged known to processes an engine starts (vLLM's workers).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from ._schema import Method, MethodOptionError, ResolvedOptions

__all__ = ["ENTRY_POINT_GROUP", "MODULES_ENV", "register", "unregister", "get", "names", "validate"]

#: entry-point group read for third-party methods
ENTRY_POINT_GROUP = "sharpv.methods"
#: environment variable naming modules that register methods when imported
MODULES_ENV = "SHARPV_METHOD_MODULES"

_METHODS: dict[str, Method] = {}
_plugins_loaded = False


def register(method: Method, *, replace: bool = False) -> Method:
    """Add ``method`` under ``method.name``; returns it (usable as ``register(Method(...))``).

    Raises:
        TypeError: ``method`` is not a :class:`Method`.
        ValueError: the name is taken and ``replace`` is false.
    """
    if not isinstance(method, Method):
        raise TypeError(f"register takes a sharpv.methods.Method, got {type(method).__name__}")
    if method.name in _METHODS and not replace and _METHODS[method.name] is not method:
        raise ValueError(f"a method named {method.name!r} is already registered")
    _METHODS[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method (tests, or a plug-in replacing a built-in); no error if absent."""
    _METHODS.pop(name, None)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            if isinstance(obj, Method):
                register(obj)
            elif callable(obj) and not isinstance(obj, type):
                result = obj()
                if isinstance(result, Method):
                    register(result)
        except Exception as e:  # a broken plug-in must not take the built-ins down
            warnings.warn(
                f"sharpv: entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP!r} "
                f"failed to load: {type(e).__name__}: {e}",
                RuntimeWarning,
                stacklevel=2,
            )
    for module in filter(None, (m.strip() for m in os.environ.get(MODULES_ENV, "").split(","))):
        try:
            importlib.import_module(module)
        except Exception as e:  # likewise
            warnings.warn(
                f"sharpv: module {module!r} of {MODULES_ENV} failed to import: "
                f"{type(e).__name__}: {e}",
                RuntimeWarning,
                stacklevel=2,
            )


def names() -> tuple[str, ...]:
    """Registered method names, in registration order (built-ins first)."""
    _load_plugins()
    return tuple(_METHODS)


def get(name: str) -> Method:
    """The method registered as ``name``.

    Raises:
        MethodOptionError: no such method (the message lists the registered ones).
    """
    _load_plugins()
    method = _METHODS.get(name) if isinstance(name, str) else None
    if method is None:
        raise MethodOptionError(
            f"unknown method {name!r}: method must be one of {', '.join(_METHODS)}"
        )
    return method


def validate(name: str, options: Mapping[str, Any] | None = None) -> ResolvedOptions:
    """THE validation of every front end: ``options`` of method ``name``, resolved.

    Defaults are filled in and strings coerced (``"0.3"`` -> 0.3, ``"true"`` -> True).

    Raises:
        MethodOptionError: unknown method; unknown, unused, conflicting, missing,
            out-of-range or non-finite option (the message names it).

    Examples:
        >>> validate("sharpv", {"mode": "budget", "budget": "0.3"})["budget"]
        0.3
        >>> try:
        ...     validate("evs", {"budget": 0.3})
        ... except ValueError as e:
        ...     print(e)
        method evs has no option budget (its options: rate, memory, memory_threshold)
    """
    return get(name).validate(options)
