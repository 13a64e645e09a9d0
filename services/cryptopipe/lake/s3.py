"""How every component talks to the S3 store (MinIO in a cluster, versitygw locally, AWS S3)."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    from pyarrow import fs


@dataclasses.dataclass(frozen=True, slots=True)
class S3Connection:
    endpoint: str | None  # http://minio:9000, the local versitygw; None for AWS
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def arrow_filesystem(self) -> fs.S3FileSystem:
        """pyarrow's native S3 filesystem: path-style, plain HTTP when the endpoint says so."""
        from pyarrow import fs

        kwargs: dict[str, Any] = {"access_key": self.access_key, "secret_key": self.secret_key, "region": self.region}
        if self.endpoint:
            url = urlparse(self.endpoint)
            kwargs.update(endpoint_override=url.netloc, scheme=url.scheme or "http", force_virtual_addressing=False)
        # retries: a brief S3 hiccup should not fail a micro-batch (Spark would retry the batch anyway)
        return fs.S3FileSystem(**kwargs, retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=5))

    def storage_options(self) -> dict[str, Any]:
        """s3fs / fsspec options (e.g. ``pd.read_parquet("s3://lake/x", storage_options=...)``)."""
        options = {"key": self.access_key, "secret": self.secret_key, "client_kwargs": {"region_name": self.region}}
        if self.endpoint:
            # path-style: virtual-host style would send requests to lake.127.0.0.1
            options |= {"endpoint_url": self.endpoint, "config_kwargs": {"s3": {"addressing_style": "path"}}}
        return options

    def s3a_conf(self) -> dict[str, str]:
        """Hadoop s3a settings (as spark.hadoop.* keys) for Spark's checkpoints."""
        conf = {
            "spark.hadoop.fs.s3a.access.key": self.access_key,
            "spark.hadoop.fs.s3a.secret.key": self.secret_key,
            # SigV4 signs the region; without it the SDK asks AWS's global endpoint to find one
            "spark.hadoop.fs.s3a.endpoint.region": self.region,
            "spark.hadoop.fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        }
        if self.endpoint:
            url = urlparse(self.endpoint)
            conf.update(
                {
                    "spark.hadoop.fs.s3a.endpoint": self.endpoint,
                    # buckets as the first path segment: virtual-host style would need DNS per bucket
                    "spark.hadoop.fs.s3a.path.style.access": "true",
                    "spark.hadoop.fs.s3a.connection.ssl.enabled": str(url.scheme == "https").lower(),
                }
            )
        return conf
