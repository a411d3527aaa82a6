"""Build the Cython extensions in ext/wsprof/*.pyx as wsprof.<name>.

WSPROF_BUILD_EXT selects how a failed compile is treated:
  required (default in CI) - a failed compile fails the install;
  optional (default)       - the install goes on without it; commands that need
                             the extension say so in one line at run time;
  skip                     - do not try to compile at all.
"""

import os
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.command.build_py import build_py

MODE = os.environ.get("WSPROF_BUILD_EXT", "optional").strip().lower()
if MODE not in {"required", "optional", "skip"}:
    sys.exit(f"WSPROF_BUILD_EXT must be required, optional or skip, not {MODE!r}")


def extensions() -> list:
    if MODE == "skip":
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:
        if MODE == "required":
            raise
        print("wsprof: Cython is not available; building without the fast path", file=sys.stderr)
        return []
    from setuptools import Extension

    # ext/wsprof/ mirrors the package so that cimports resolve to real module
    # names (a cimport imports the defining module at run time).
    sources = sorted(Path("ext/wsprof").glob("*.pyx"))
    exts = [
        Extension(
            f"wsprof.{pyx.stem}",
            [str(pyx)],
            extra_compile_args=["-O3"],
        )
        for pyx in sources
    ]
    return cythonize(
        exts,
        compiler_directives={"language_level": "3", "boundscheck": False, "wraparound": False},
        include_path=["ext"],
    )


class OptionalBuildExt(build_ext):
    """Turn a compile failure into a warning unless the extension is required."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            self._give_up(exc)

    def build_extension(self, ext) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._give_up(exc)

    def _give_up(self, exc: Exception) -> None:
        if MODE == "required":
            raise exc
        print(
            f"wsprof: WARNING: building the Cython fast path failed ({exc}); "
            "the reference (pure-Python) paths still work. "
            "Set WSPROF_BUILD_EXT=required to make this an error.",
            file=sys.stderr,
        )


class BuildPyWithScenarios(build_py):
    """Ship scenarios/*.toml (kept at the repo root, as data) inside the package."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "wsprof" / "scenarios"
        target.mkdir(parents=True, exist_ok=True)
        for toml in sorted(Path("scenarios").glob("*.toml")):
            self.copy_file(str(toml), str(target / toml.name))


setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": OptionalBuildExt, "build_py": BuildPyWithScenarios},
)
