"""A user's app, and the production command line that serves it (no process handling here).

wsprof runs a user's app with the real server programs (``python -m uvicorn``,
``hypercorn``, ``gunicorn``, or Flask-SocketIO's ``socketio.run``) from the same
interpreter, so what is measured is what the user deploys, not a stand-in.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wsprof.errors import WsprofError

SERVERS = ("uvicorn", "hypercorn", "gunicorn", "flask-socketio")
#: gunicorn's worker classes by the name a scenario uses.
GUNICORN_WORKERS = {
    "eventlet": "eventlet",
    "gevent": "gevent",
    "uvicorn": "uvicorn.workers.UvicornWorker",
}
#: What each server (and gunicorn worker) needs installed: (module to find, pip package).
_REQUIRES: dict[str, tuple[str, str]] = {
    "uvicorn": ("uvicorn", "uvicorn"),
    "hypercorn": ("hypercorn", "hypercorn"),
    "gunicorn": ("gunicorn", "gunicorn"),
    "flask-socketio": ("flask_socketio", "flask-socketio"),
}
_WORKER_REQUIRES: dict[str, tuple[str, str]] = {
    "eventlet": ("eventlet", "eventlet"),
    "gevent": ("gevent", "gevent"),
    "uvicorn": ("uvicorn", "uvicorn"),
}
#: The module of gunicorn's own worker class (gunicorn 24+ no longer ships eventlet's).
_GUNICORN_WORKER_MODULES = {
    "eventlet": "gunicorn.workers.geventlet",
    "gevent": "gunicorn.workers.ggevent",
    "uvicorn": "uvicorn.workers",
}
MAX_WORKERS = 64
_APP_RE = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*(\(\))?")
_OPTION_RE = re.compile(r"[a-z][a-z0-9_-]{0,39}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


class AppSpecError(WsprofError, ValueError):
    """A user-app variant that cannot be run as declared (names the bad key)."""


@dataclass(frozen=True)
class AppSpec:
    """A user's app as a scenario variant declares it."""

    app: str  # "module:attribute", importable from ``directory``
    server: str  # one of SERVERS
    directory: str  # the scenario file's directory (or the current one on the command line)
    worker: str | None = None  # gunicorn only: a GUNICORN_WORKERS key
    workers: int = 1
    path: str = "/ws"
    mode: str = "raw"  # raw | socketio
    serializer: str = "json"
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """How results name the server: ``app:uvicorn``, ``app:gunicorn+eventlet``."""
        return f"app:{self.server}" + (f"+{self.worker}" if self.worker else "")


def default_mode(server: str, path: str) -> str:
    """Socket.IO when the path or server says so, else a raw WebSocket."""
    return "socketio" if server == "flask-socketio" or "socket.io" in path else "raw"


def check_spec(spec: AppSpec) -> AppSpec:
    """Every key's value checked; the message names the key (``app``, ``worker``...)."""
    if not _APP_RE.fullmatch(spec.app):
        raise AppSpecError(
            f"key 'app': must be module:attribute (e.g. chat.main:app), not {spec.app!r}"
        )
    if spec.server not in SERVERS:
        raise AppSpecError(
            f"key 'server': must be one of {', '.join(SERVERS)}, not {spec.server!r}"
        )
    if spec.server == "gunicorn":
        if spec.worker not in GUNICORN_WORKERS:
            raise AppSpecError(
                f"key 'worker': gunicorn needs one of {', '.join(GUNICORN_WORKERS)}, "
                f"not {spec.worker!r}"
            )
    elif spec.worker is not None:
        raise AppSpecError(f"key 'worker': only gunicorn takes a worker class, not {spec.server}")
    if isinstance(spec.workers, bool) or not isinstance(spec.workers, int):
        raise AppSpecError("key 'workers': must be a positive integer")
    if not 1 <= spec.workers <= MAX_WORKERS:
        raise AppSpecError(f"key 'workers': must be from 1 to {MAX_WORKERS}, not {spec.workers}")
    if spec.server == "flask-socketio" and spec.workers != 1:
        raise AppSpecError("key 'workers': socketio.run serves one process; use gunicorn for more")
    if not spec.path.startswith("/") or _CONTROL.search(spec.path) or " " in spec.path:
        raise AppSpecError(f"key 'path': must be a URL path starting with '/', not {spec.path!r}")
    if spec.mode not in ("raw", "socketio"):
        raise AppSpecError(f"key 'mode': must be raw or socketio, not {spec.mode!r}")
    if spec.serializer not in ("json", "msgpack"):
        raise AppSpecError(f"key 'serializer': must be json or msgpack, not {spec.serializer!r}")
    for key, value in spec.options.items():
        if not _OPTION_RE.fullmatch(key):
            raise AppSpecError(f"key 'options': {key!r} is not an option name (a-z 0-9 _ -)")
        if _CONTROL.search(value):
            raise AppSpecError(f"key 'options.{key}': must not contain control characters")
    if spec.server == "flask-socketio" and spec.options:
        raise AppSpecError("key 'options': socketio.run takes none here")
    return spec


def check_installed(spec: AppSpec) -> None:
    """The server program (and gunicorn's worker) must import here: name the package if not."""
    needs = [_REQUIRES[spec.server]]
    if spec.worker is not None:
        needs.append(_WORKER_REQUIRES[spec.worker])
    for module, package in needs:
        if not _find(module):
            what = f"{spec.server} worker {spec.worker!r}" if module != needs[0][0] else spec.server
            raise WsprofError(
                f"{what} is not installed for {sys.executable}: pip install {package}"
            )
    if spec.worker is not None and not _find(_GUNICORN_WORKER_MODULES[spec.worker]):
        version = _version("gunicorn")
        raise WsprofError(
            f"gunicorn {version} has no {spec.worker} worker class "
            f"({_GUNICORN_WORKER_MODULES[spec.worker]} is missing); "
            + (
                'for eventlet use server = "flask-socketio" (socketio.run), or a gunicorn '
                "that still ships it"
                if spec.worker == "eventlet"
                else f"pip install {_WORKER_REQUIRES[spec.worker][1]}"
            )
        )


@functools.cache
def _gunicorn_has_control_socket() -> bool:
    spec = importlib.util.find_spec("gunicorn.config")
    if spec is None or spec.origin is None:
        return False
    try:
        return "--no-control-socket" in Path(spec.origin).read_text(encoding="utf-8")
    except OSError:
        return False


def _find(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def command(spec: AppSpec, host: str, port: int) -> list[str]:
    """The exact production command line (run with cwd = ``spec.directory``)."""
    py = [sys.executable, "-m"]
    extra: list[str] = []
    options = dict(spec.options)
    if spec.server == "uvicorn":
        cmd = [*py, "uvicorn", spec.app, "--host", host, "--port", str(port)]
        if spec.workers > 1:
            cmd += ["--workers", str(spec.workers)]
    elif spec.server == "hypercorn":
        cmd = [*py, "hypercorn", spec.app, "--bind", f"{host}:{port}"]
        cmd += ["--workers", str(spec.workers)]
        if "loop" in options:  # hypercorn's name for the event loop is its worker class
            cmd += ["--worker-class", options.pop("loop")]
    elif spec.server == "gunicorn":
        assert spec.worker is not None
        cmd = [*py, "gunicorn", spec.app, "--bind", f"{host}:{port}"]
        cmd += ["--workers", str(spec.workers), "--worker-class", GUNICORN_WORKERS[spec.worker]]
        if _gunicorn_has_control_socket():
            # gunicorn 24+ opens one fixed ~/.gunicorn/gunicorn.ctl per user: two servers
            # (variants side by side, concurrent runs) would contend for it. Not on the
            # message path, so turning it off changes nothing measured.
            cmd.append("--no-control-socket")
    else:
        cmd = [*py, "wsprof.servers.flask_run", spec.app, "--host", host, "--port", str(port)]
    for key, value in options.items():
        extra += [_flag(key), value]
    return cmd + extra


def child_env(spec: AppSpec, src_dir: str) -> dict[str, str]:
    """The server's environment: the app's directory first on the path, then wsprof's."""
    env = dict(os.environ)
    parts = (spec.directory, src_dir, env.get("PYTHONPATH", ""))
    env["PYTHONPATH"] = os.pathsep.join(p for p in parts if p)
    return env
