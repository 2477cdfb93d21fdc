"""Large task payloads and results live in S3; the record and Redis keep a reference.

With ``DTQ_PAYLOAD_BUCKET`` set, a payload (or result) whose JSON is larger than
``DTQ_MAX_PAYLOAD_BYTES`` is written to ``payloads/<task id>.json`` (``results/…``)
before anything else is written, and the task carries a small reference object instead.
Workers call :func:`resolve` on the payload they claim; ``TaskService.get`` resolves both, so
the API returns them in full. Without a bucket nothing changes: larger payloads are
refused (413) as before.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.core.errors import ConfigError, PayloadTooLarge, Unavailable

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: The key of a reference object; the ``$`` keeps it apart from ordinary payload keys.
REF = "$dtq_offloaded"
#: Largest payload accepted for offloading (the HTTP body cap applies first).
MAX_OFFLOADED_BYTES = 64 * 1024 * 1024
_PREFIXES = ("payloads/", "results/")


def is_ref(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get(REF), str) and len(value) == 3


class Payloads:
    """Offloads to and resolves from one bucket."""

    def __init__(self, s3: S3Client, bucket: str, *, max_inline_bytes: int) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.max_inline_bytes = max_inline_bytes

    def offload_payload(self, task_id: str, payload_json: str) -> str:
        """The JSON to store for a payload: itself, or a reference once it is in S3."""
        return self._offload(f"payloads/{task_id}.json", payload_json)

    def offload_result(self, task_id: str, result_json: str) -> str:
        """The JSON to report as a result: itself, or a reference once it is in S3."""
        return self._offload(f"results/{task_id}.json", result_json)

    def _offload(self, key: str, text: str) -> str:
        data = text.encode()
        if len(data) <= self.max_inline_bytes:
            return text
        if len(data) > MAX_OFFLOADED_BYTES:
            raise PayloadTooLarge(f"larger than {MAX_OFFLOADED_BYTES} bytes, even for S3")
        digest = hashlib.sha256(data).hexdigest()
        try:
            # Deterministic key: a retried request overwrites its own object, never
            # another task's. Written before the record, so a failure leaves no task
            # pointing at a missing object (at worst an orphan object; see docs/operations.md's
            # lifecycle rule).
            self.s3.put_object(
                Bucket=self.bucket, Key=key, Body=data, ContentType="application/json"
            )
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable("S3 is unavailable (payload offload)") from exc
        ref = {REF: f"s3://{self.bucket}/{key}", "bytes": len(data), "sha256": digest}
        return json.dumps(ref, separators=(",", ":"))

    def resolve(self, value: Any) -> Any:
        """The full value behind a reference (anything else is returned as it is)."""
        if not is_ref(value):
            return value
        key = self._key(value[REF])
        try:
            data = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable(f"S3 is unavailable (reading {key})") from exc
        if hashlib.sha256(data).hexdigest() != value["sha256"]:
            raise Unavailable(f"S3 object {key} does not match its reference")
        return json.loads(data)

    def _key(self, url: str) -> str:
        # Only our own objects: a hand-written reference must not make a worker read an
        # arbitrary key (or bucket) that its role happens to reach.
        prefix = f"s3://{self.bucket}/"
        key = url[len(prefix) :] if url.startswith(prefix) else ""
        if not key.startswith(_PREFIXES) or ".." in key:
            raise ConfigError(f"payload reference {url!r} is not in DTQ_PAYLOAD_BUCKET")
        return key


def resolve(payload: dict[str, Any], payloads: Payloads | None) -> dict[str, Any]:
    """What a worker calls on a claimed payload: the full payload, fetched from S3 when
    it was offloaded (``payloads`` is ``Services.payloads`` / ``TaskService.payloads``)."""
    if not is_ref(payload):
        return payload
    if payloads is None:
        raise ConfigError("a task payload is in S3 but DTQ_PAYLOAD_BUCKET is not set")
    value = payloads.resolve(payload)
    if not isinstance(value, dict):
        raise Unavailable("an offloaded payload is not a JSON object")
    return value
