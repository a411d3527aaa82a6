"""Scenarios: files -> plan; runner -> record; analysis (pure) -> result.

``files`` reads scenario TOML into a plan, ``runner`` measures it into a
``record`` (typed, frozen, its own JSON form), ``analysis`` turns a record into
the wsprof.scenario/1 result with no I/O; ``wsprof.report`` presents it.
"""
