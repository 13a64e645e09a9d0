"""The lake space a pipeline owns: its ownership marker, and deletionPolicy: Delete, which removes
every object under ``s3://BUCKET/PREFIX/`` (the candles and the Spark checkpoints of every
generation), and nothing outside it, and only when the marker says the prefix is the pipeline's.

The marker, ``PREFIX/_cryptopipe_owner.json``, holds the namespace, name and uid of the pipeline
that claimed the prefix (written by the reconcile, claim_lake). See docs/operator.md, "Lake space
and ownership".

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
import dataclasses
import json
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


OWNER_MARKER = "_cryptopipe_owner.json"


@dataclasses.dataclass(frozen=True)
class LakeOwner:
    """Who a lake prefix belongs to, as its marker says."""

    namespace: str
    name: str
    uid: str

    @classmethod
    def of(cls, pipeline: Pipeline) -> LakeOwner:
        return cls(pipeline.namespace, pipeline.name, pipeline.uid)

    def same_pipeline_name(self, other: LakeOwner) -> bool:
        return (self.namespace, self.name) == (other.namespace, other.name)

    def __str__(self) -> str:
        return f"CryptoPipeline {self.namespace}/{self.name} (uid {self.uid})"


def lake_location(pipeline: Pipeline) -> LakeLocation:
    return pipeline.lake


def marker_path(location: LakeLocation) -> str:
    return f"{checked_root(location)}/{OWNER_MARKER}"


def reconcile_filesystem(connection: S3Connection) -> fs.S3FileSystem:
    """The filesystem a reconcile reads the lake with (the marker, the generation records)."""
    return _marker_filesystem(connection)


def _marker_filesystem(connection: S3Connection) -> fs.S3FileSystem:
    """For the reconcile's marker check: short timeouts and few retries (an unreachable S3 must not
    hold a reconcile for long; the claim is tried again at the next one)."""
    from pyarrow import fs

    return fs.S3FileSystem(
        access_key=connection.access_key,
        secret_key=connection.secret_key,
        region=connection.region,
        connect_timeout=2,
        request_timeout=5,
        retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=2),
        **_endpoint_kwargs(connection),
    )


def _endpoint_kwargs(connection: S3Connection) -> dict[str, object]:
    from urllib.parse import urlparse

    if not connection.endpoint:
        return {}
    url = urlparse(connection.endpoint)
    return {"endpoint_override": url.netloc, "scheme": url.scheme or "http", "force_virtual_addressing": False}


def _read_marker(s3: fs.FileSystem, path: str) -> LakeOwner | None:
    try:
        with s3.open_input_stream(path) as stream:
            raw = stream.read()
    except FileNotFoundError:
        return None
    try:
        data = json.loads(raw)
        return LakeOwner(str(data["namespace"]), str(data["name"]), str(data["uid"]))
    except (ValueError, KeyError, TypeError):
        # unreadable: someone else's file of that name, or a damaged one; never ours
        return LakeOwner("?", "?", f"unreadable marker {path}")


def read_owner(
    connection: S3Connection, location: LakeLocation, *, filesystem: fs.FileSystem | None = None
) -> LakeOwner | None:
    """The owner the prefix's marker names, None when there is no marker."""
    s3 = filesystem or connection.arrow_filesystem()
    return _read_marker(s3, marker_path(location))


def write_owner(
    connection: S3Connection, location: LakeLocation, owner: LakeOwner, *, filesystem: fs.FileSystem | None = None
) -> None:
    s3 = filesystem or connection.arrow_filesystem()
    body = json.dumps(dataclasses.asdict(owner), sort_keys=True).encode()
    with s3.open_output_stream(marker_path(location)) as stream:
        stream.write(body)


def claim_lake(
    connection: S3Connection, location: LakeLocation, owner: LakeOwner, *, filesystem: fs.FileSystem | None = None
) -> LakeOwner | None:
    """Mark the prefix as ``owner``'s, unless it (or a prefix it nests in) is marked as another
    pipeline's: that other owner is returned and nothing is written.

    A marker naming the same namespace/name with another uid is an earlier incarnation of this
    pipeline (deleted with Retain, created again): the new one takes the prefix over, as it takes
    over the retained topics. An unmarked prefix is claimed whatever it holds (data written before
    markers existed)."""
    s3 = filesystem or _marker_filesystem(connection)
    segments = checked_root(location).split("/")
    # bucket/a, bucket/a/b, ...: the ancestors' markers first, then the prefix's own
    for depth in range(2, len(segments) + 1):
        path = f"{'/'.join(segments[:depth])}/{OWNER_MARKER}"
        found = _read_marker(s3, path)
        if found is None:
            continue
        if depth < len(segments) or not found.same_pipeline_name(owner):
            return found
        if found == owner:
            return None
    write_owner(connection, location, owner, filesystem=s3)
    return None


def foreign_markers(
    connection: S3Connection, location: LakeLocation, owner: LakeOwner, *, filesystem: fs.FileSystem | None = None
) -> list[str]:
    """Markers below the prefix (not its own) that name another pipeline: a nested lake that Delete
    must not wipe."""
    s3 = filesystem or connection.arrow_filesystem()
    root = checked_root(location)
    own = marker_path(location)
    found = []
    for path in _files(s3, root):
        if path.rsplit("/", 1)[-1] == OWNER_MARKER and path != own:
            other = _read_marker(s3, path)
            if other is not None and other.uid != owner.uid:
                found.append(f"s3://{path} ({other})")
    return found


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
