"""``python -m wsprof``: the same as the ``wsprof`` command."""

from wsprof.cli import main

raise SystemExit(main())
