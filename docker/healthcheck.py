#!/usr/bin/env python3
"""Container health check: exit 0 when the server answers ``GET /ping`` with 200.

Used by the Dockerfile's HEALTHCHECK and docker-compose.yml. The slim base image has no
curl, so this uses the standard library only and runs with any Python in the image.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def ping_url() -> str:
    # Same precedence as the server: SageMaker's port when it assigns one, else ours.
    port = os.environ.get("SAGEMAKER_BIND_TO_PORT") or os.environ.get("COSTAWARE_PORT") or "8080"
    return f"http://127.0.0.1:{port}/ping"


def main() -> int:
    url = ping_url()
    timeout = float(os.environ.get("COSTAWARE_HEALTHCHECK_TIMEOUT", "3"))
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
