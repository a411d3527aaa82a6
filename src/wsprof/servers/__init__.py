"""Real server stacks (raw WebSocket and Socket.IO) and the launcher that runs them.

Nothing heavy is imported here: ``serve`` runs inside green-thread servers
that must monkey-patch before threading or subprocess are loaded, so the
launcher's names are resolved lazily.
"""

from __future__ import annotations

from typing import Any

from wsprof.servers.stacks import STACKS, StackOptionError, stack_names, validate_options

__all__ = [
    "STACKS",
    "ServerFailed",
    "ServerProcess",
    "StackOptionError",
    "stack_names",
    "validate_options",
]


def __getattr__(name: str) -> Any:
    if name in ("ServerProcess", "ServerFailed"):
        from wsprof.servers import launcher

        return getattr(launcher, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
