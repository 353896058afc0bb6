"""Runs moto's server with the two small corrections the local cloud needs (started by cloud.py
as a script, in its own process, with MOTO_LAMBDA_STUB_ECR=false in its environment).

1. Moto's UpdateFunctionCode ignores `Architectures`; real Lambda applies it with the new code.
   The product relies on that (an arm64 image on an x86_64 function breaks it), so it is applied.
2. Images reach moto's ECR from registry push notifications, which the registry sends
   asynchronously: a client could ask ECR about an image a moment before its event arrived.
   Real ECR shows an image as soon as the push returns, so before answering an ECR read (and before
   Lambda resolves an image) moto asks the harness to record what the registry already holds for
   that repository (`LOCALCLOUD_SYNC_URL?repository=NAME`). Nothing else is changed.
"""

from __future__ import annotations

import functools
import os
import sys
import urllib.parse
import urllib.request
from typing import Any, Callable

from moto.awslambda.models import LambdaFunction
from moto.ecr.models import ECRBackend
from moto.server import main as moto_main

SYNC_TIMEOUT_SECONDS = 20


def _sync_repository(repository: str) -> None:
    base = os.environ.get("LOCALCLOUD_SYNC_URL")
    if not base or not repository:
        return
    url = f"{base}?{urllib.parse.urlencode({'repository': repository})}"
    with urllib.request.urlopen(url, timeout=SYNC_TIMEOUT_SECONDS) as response:
        if response.status != 200:
            raise RuntimeError(f"local cloud: syncing ECR repository {repository} failed: HTTP {response.status}")


def _synced_read(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: ECRBackend, *args: Any, **kwargs: Any) -> Any:
        repository = kwargs.get("repository_name", args[0] if args else "")
        _sync_repository(repository)
        return method(self, *args, **kwargs)

    return wrapper


def _apply_architectures(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self: LambdaFunction, updated_spec: dict[str, Any]) -> Any:
        if updated_spec.get("Architectures") and not updated_spec.get("DryRun"):
            # The property setter validates the value as moto does for CreateFunction.
            self.architectures = updated_spec["Architectures"]
        return method(self, updated_spec)

    return wrapper


def patch_moto() -> None:
    for name in ("describe_images", "batch_get_image", "list_images"):
        setattr(ECRBackend, name, _synced_read(getattr(ECRBackend, name)))
    LambdaFunction.update_function_code = _apply_architectures(LambdaFunction.update_function_code)  # type: ignore[method-assign]


if __name__ == "__main__":
    patch_moto()
    moto_main(sys.argv[1:])
