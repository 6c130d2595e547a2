"""Redis adapter: connection, key names, Lua scripts, leases and the embedded server.

The only importer of ``redis``. Domain modules receive a ``Store`` and call its typed methods or
its scripts; every key comes from ``keys.KeySpace``; every Redis failure leaves it as
``Unavailable``.
"""

from gateway.store.connect import Store, connect_store
from gateway.store.keys import KeySpace, slot_tag

__all__ = ["KeySpace", "Store", "connect_store", "slot_tag"]
