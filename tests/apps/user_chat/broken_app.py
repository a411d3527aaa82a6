"""An app whose import fails, as a typo in a user's module does."""

from __future__ import annotations

import user_chat.no_such_module  # noqa: F401

app = None
