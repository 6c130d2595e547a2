"""Redis adapter: connection, key names, Lua scripts and the embedded server.

The only importer of ``redis``. Domain modules receive a ``Store`` and call its methods or its
scripts; every key comes from ``keys.KeySpace``.
"""

from gateway.store.connect import Store, connect_store
from gateway.store.keys import KeySpace

__all__ = ["KeySpace", "Store", "connect_store"]

from redis.exceptions import RedisError as _RedisError

#: Exceptions that mean "Redis is unavailable"; the web layer renders them as 503.
STORAGE_ERRORS: tuple[type[BaseException], ...] = (_RedisError,)
__all__ += ["STORAGE_ERRORS"]
