"""Load clients: the Cython fast path and the pure-Python (asyncio) reference."""
