"""The broadcast workload: N connections in one room, some of them sending, all receiving.

The figure that matters for a fan-out server is deliveries per second and the
send -> delivery latency, with proof that every recipient got every broadcast
exactly once. Both clients (fast = Cython in wsprof._broadcast, reference =
asyncio in broadcast_reference) obey this contract:

- connection ``i`` goes to ``([url, *extra_urls])[i % n]``; every connection is a
  recipient, the first ``senders`` also send;
- a broadcast's body carries its id (wsprof.protocol.broadcast); ids are global;
- closed loop: a sender keeps ``in_flight`` broadcasts outstanding, one being complete
  when every recipient has it; open loop: ``rate`` broadcasts/s over all senders at
  intended times, latency measured from the intended time (no coordinated omission);
- the broadcasts sent inside the window are counted; after it the client waits up to
  ``drain_s`` for their deliveries, then ``missing`` is what never arrived;
- a delivery of an id already received by that recipient is a duplicate.
"""

from __future__ import annotations

from wsprof.client.base import CLIENTS
from wsprof.client.broadcast_base import BroadcastConfig, BroadcastResult
from wsprof.errors import WsprofError

__all__ = ["BroadcastConfig", "BroadcastResult", "run"]


def run(config: BroadcastConfig, client: str = "fast") -> BroadcastResult:
    """Run ``config`` with the fast (Cython) or the reference (asyncio) client."""
    if client == "fast":
        from wsprof.client import broadcast_fast

        return broadcast_fast.run(config)
    if client == "reference":
        from wsprof.client import broadcast_reference

        return broadcast_reference.run(config)
    raise WsprofError(f"client must be one of {', '.join(CLIENTS)}, not {client!r}")
