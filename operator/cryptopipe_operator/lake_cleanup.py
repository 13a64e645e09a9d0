"""deletionPolicy: Delete for the lake: remove every object under ``s3://BUCKET/PREFIX/`` (the
candles and the Spark checkpoints of every generation), and nothing outside it.

Blocking (pyarrow's S3 filesystem); the handler runs it in a thread. No Kubernetes here: the
caller passes the Secret's ``data`` as the API server returns it (base64 values).

pyarrow's ``delete_dir_contents`` lists the prefix and sends DeleteObjects in batches of 1000,
including a ``dir/`` key per directory (its own directory markers). On AWS S3 and MinIO one pass
removes everything. A file-backed S3 server (versitygw over a folder) refuses to delete a
directory key whose folder still holds files deleted in the same or a later batch ("Directory
object not empty"); the next pass finds only the empty directories and removes them. So: passes
until the prefix lists empty, at most ``MAX_PASSES``, then a listing decides success.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cryptopipe.lake.layout import LakeLocation
from cryptopipe.lake.s3 import S3Connection
from cryptopipe_operator.spec import Pipeline

if TYPE_CHECKING:
    from pyarrow import fs

log = logging.getLogger(__name__)

# one pass per directory level is the worst case on a file-backed server; checkpoints nest ~7 deep
MAX_PASSES = 10


class LakeCleanupError(RuntimeError):
    """The lake prefix could not be (safely) removed; the message says why."""


class UnsafePrefix(LakeCleanupError):
    """The sink's bucket/prefix would reach outside the pipeline's own lake: refused, whatever the retry."""


class SinkSecretUnusable(LakeCleanupError):
    """The sink's credentials Secret is missing, lacks a key, or holds one that is not base64 text:
    a person fixes the Secret, and the next retry can succeed."""


def lake_location(pipeline: Pipeline) -> LakeLocation:
    return LakeLocation(pipeline.spec.sink.bucket, pipeline.spec.sink.prefix)


def sink_connection(pipeline: Pipeline, secret_data: Mapping[str, str] | None) -> S3Connection:
    """The S3 connection of the pipeline's sink, with the keys its credentialsSecretRef names
    taken from the Secret's (base64) ``data``."""
    sink = pipeline.spec.sink
    ref = sink.credentials_secret_ref
    data = secret_data or {}

    def value(key: str) -> str:
        if key not in data:
            raise SinkSecretUnusable(f"Secret {ref.name} has no key {key!r} (spec.sink.credentialsSecretRef)")
        try:
            return base64.b64decode(data[key], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise SinkSecretUnusable(f"Secret {ref.name} key {key!r} is not base64 text: {exc}") from None

    return S3Connection(sink.endpoint, value(ref.access_key_key), value(ref.secret_key_key), region=sink.region)


def checked_root(location: LakeLocation) -> str:
    """``bucket/prefix`` to delete under, or UnsafePrefix for a prefix that would reach outside
    the pipeline's own lake: empty (the whole bucket), or with empty, ``.`` or ``..`` segments."""
    if not location.bucket.strip("/"):
        raise UnsafePrefix("refusing to delete lake data: the sink has no bucket")
    prefix = location.prefix.strip("/")
    if not prefix:
        raise UnsafePrefix(
            f"refusing to delete lake data: the sink's prefix is empty, which would wipe the whole bucket {location.bucket!r}"
        )
    if any(segment in ("", ".", "..") for segment in prefix.split("/")):
        raise UnsafePrefix(
            f"refusing to delete lake data: prefix {location.prefix!r} has an empty, '.' or '..' segment"
        )
    return location.root


def delete_lake_prefix(
    connection: S3Connection, location: LakeLocation, *, filesystem: fs.FileSystem | None = None
) -> int:
    """Delete every object under ``s3://bucket/prefix/``; the number of objects that were there.

    Idempotent: a prefix already gone (a retry after a partial run, a pipeline that never wrote)
    counts 0. Raises LakeCleanupError when objects are left after ``MAX_PASSES`` (with the last
    S3 error), UnsafePrefix when the prefix is unsafe (checked before any request), and OSError when
    S3 cannot be reached.
    """
    from pyarrow import fs

    root = checked_root(location)
    s3 = filesystem or connection.arrow_filesystem()
    found = _files(s3, root)
    last_error: OSError | None = None
    for attempt in range(1, MAX_PASSES + 1):
        try:
            s3.delete_dir_contents(root, missing_dir_ok=True)
            break
        except OSError as exc:
            last_error = exc
            log.info("deleting s3://%s/: pass %d left objects (%s)", root, attempt, str(exc).splitlines()[0])
    left = _files(s3, root)
    if left:
        raise LakeCleanupError(f"{len(left)} objects left under s3://{root}/ after {MAX_PASSES} passes: {last_error}")
    # the prefix's own directory (a file-backed server keeps the folder; S3 has nothing there)
    if s3.get_file_info(root).type == fs.FileType.Directory:
        with contextlib.suppress(FileNotFoundError):
            s3.delete_dir(root)
    return len(found)


def _files(s3: fs.FileSystem, root: str) -> list[str]:
    from pyarrow import fs

    selector = fs.FileSelector(root, recursive=True, allow_not_found=True)
    return [info.path for info in s3.get_file_info(selector) if info.type == fs.FileType.File]
