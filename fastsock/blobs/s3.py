"""S3 (or any S3-compatible store) through boto3. Objects are private; downloads stream
through the server, which checks access, so no object is ever public."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from fastsock.blobs.base import CHUNK, Chunks
from fastsock.errors import Unavailable

log = logging.getLogger("fastsock.blobs")


class S3Blobs:
    name = "s3"

    def __init__(self, bucket: str, endpoint_url: str | None) -> None:
        self.bucket = bucket
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            config=Config(
                connect_timeout=3, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"}
            ),
        )

    async def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(getattr(self.client, method), **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(kwargs.get("Key")) from exc
            log.warning("s3_error", extra={"fields": {"method": method, "error": str(exc)}})
            raise Unavailable("file storage is unavailable") from exc
        except BotoCoreError as exc:
            log.warning("s3_unreachable", extra={"fields": {"method": method, "error": str(exc)}})
            raise Unavailable("file storage is unavailable") from exc

    def close(self) -> None:
        """Nothing held: boto3's connection pool closes with the process."""

    async def check(self) -> None:
        try:
            await self._call("head_bucket", Bucket=self.bucket)
        except Unavailable:
            log.warning("s3_bucket_unreachable", extra={"fields": {"bucket": self.bucket}})

    async def put(self, key: str, path: Path, content_type: str) -> None:
        # upload_file sends big files as a multipart upload and aborts it on failure, so a
        # failed upload leaves no object behind.
        try:
            await asyncio.to_thread(
                self.client.upload_file,
                str(path),
                self.bucket,
                key,
                ExtraArgs={"ContentType": content_type},
            )
        except (BotoCoreError, ClientError, boto3.exceptions.S3UploadFailedError) as exc:
            log.warning("s3_upload_failed", extra={"fields": {"error": str(exc)}})
            raise Unavailable("file storage is unavailable") from exc

    async def read(self, key: str, start: int, end: int) -> Chunks:
        response = await self._call(
            "get_object", Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}"
        )
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, CHUNK):
                yield chunk
        finally:
            body.close()

    async def delete(self, key: str) -> None:
        await self._call("delete_object", Bucket=self.bucket, Key=key)
