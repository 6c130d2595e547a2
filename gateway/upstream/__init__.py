"""The CreateOS adapter (its own HTTP/1.1 transport over httptools; httpx only in the agent client).

``CreateOSClient`` speaks the REST API of docs/UPSTREAM.md; ``parse_envelope`` decides success;
results are the frozen dataclasses of ``models``; failures are the ``Upstream*`` errors of
``errors``, all rooted in ``gateway.errors``.
"""

from gateway.upstream.client import MAX_FILES_PER_UPLOAD, CreateOSClient
from gateway.upstream.envelope import parse_envelope, parse_retry_after
from gateway.upstream.errors import (
    UpstreamError,
    UpstreamForbidden,
    UpstreamNameTaken,
    UpstreamNotFound,
    UpstreamRejected,
    UpstreamThrottled,
    UpstreamUnauthorized,
    UpstreamUnreachable,
)
from gateway.upstream.models import (
    DEPLOYMENT_FAILED,
    DEPLOYMENT_IN_PROGRESS,
    DEPLOYMENT_LIVE,
    BuildLogLine,
    Deployment,
    Project,
)

__all__ = [
    "DEPLOYMENT_FAILED",
    "DEPLOYMENT_IN_PROGRESS",
    "DEPLOYMENT_LIVE",
    "MAX_FILES_PER_UPLOAD",
    "BuildLogLine",
    "CreateOSClient",
    "Deployment",
    "Project",
    "UpstreamError",
    "UpstreamForbidden",
    "UpstreamNameTaken",
    "UpstreamNotFound",
    "UpstreamRejected",
    "UpstreamThrottled",
    "UpstreamUnauthorized",
    "UpstreamUnreachable",
    "parse_envelope",
    "parse_retry_after",
]
