"""The MongoDB backend (PyMongo's async API): production, and several nodes."""

from fastsock.store.mongo.client import MongoStore

__all__ = ["MongoStore"]
