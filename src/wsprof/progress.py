"""The progress contract between measuring code and the console.

Long runs (scenarios, client-bench, micro) report ``(what, done, total)``
through this callback; only ``wsprof.report.progress`` draws it, so measuring
modules never import a terminal library.
"""

from collections.abc import Callable

OnProgress = Callable[[str, int, int], None]
