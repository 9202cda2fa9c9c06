"""Everything that talks to MongoDB; services call these repositories."""

from fastsock.store.client import Store
from fastsock.store.errors import Duplicate, is_unavailable

__all__ = ["Duplicate", "Store", "is_unavailable"]
