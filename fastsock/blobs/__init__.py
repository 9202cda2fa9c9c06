"""File storage backends behind one interface: local disk (default) and S3."""

from __future__ import annotations

from fastsock import tracing
from fastsock.blobs.base import BlobStore, Chunks
from fastsock.blobs.local import LocalBlobs
from fastsock.blobs.traced import TracedBlobs
from fastsock.config import ConfigError, Settings

__all__ = ["BlobStore", "Chunks", "LocalBlobs", "make_blob_store"]


def make_blob_store(settings: Settings) -> BlobStore:
    store = _backend(settings)
    return TracedBlobs(store) if tracing.ON else store


def _backend(settings: Settings) -> BlobStore:
    if settings.blob_backend == "s3":
        from fastsock.blobs.s3 import S3Blobs  # boto3 is only imported when used

        assert settings.s3_bucket is not None
        return S3Blobs(settings.s3_bucket, settings.s3_endpoint_url)
    if settings.blob_backend == "local":
        return LocalBlobs(settings.uploads_path)
    raise ConfigError(f"unknown blob backend {settings.blob_backend}")
