"""redact: take secrets out of a message before anything prints it.

Secrets are the values of the build args a deploy.yaml sets (their names may be shown) and
registry credentials. Errors of the Docker engine and its SDK quote the request that failed, and
a build request carries every build arg in its URL, as URL-encoded JSON; so each secret is also
removed in the forms it takes there (JSON-escaped, percent-encoded), and a URL-valued secret
(a GOPROXY with credentials, say) also loses the password of its userinfo on its own.

Besides the secrets it is told, `redact` masks what has the shape of a credential whatever it
belongs to: the password in `scheme://user:password@host`, and the signature and credential of
an AWS `Authorization` header.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.parse
from typing import Iterable, Mapping

from deployer.layout import RESERVED_BUILD_ARGS

MASK = "***"
# Shorter values ("off", "1", "arm") are not secrets, and masking them would garble every message
# they happen to occur in.
MIN_SECRET_LENGTH = 4

_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@]*):[^\s/@]+@")
_AWS_AUTH = re.compile(r"(?i)\b(Credential|Signature|X-Amz-Security-Token|X-Amz-Credential|X-Amz-Signature)=[^\s,&'\"]+")
_AUTH_HEADER = re.compile(r"(?i)\b(Authorization|X-Registry-Auth)(['\"]?\s*[:=]\s*['\"]?)[^'\"\n]+")


def build_arg_secrets(build_args: Mapping[str, str]) -> tuple[str, ...]:
    """The values of the build args that deploy.yaml sets: what a message must never show. The
    args deployer sets itself (image names, platform, go build flags) are no secrets."""
    return tuple(value for name, value in build_args.items() if name not in RESERVED_BUILD_ARGS)


def credential_secrets(username: str, password: str) -> tuple[str, ...]:
    """A registry password, and the base64 `user:password` token it travels in."""
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return (password, token)


def _forms(secret: str) -> set[str]:
    """`secret` as it appears in other text: itself, JSON-escaped, percent-encoded (both ways a
    query string encodes spaces), and the percent-encoded JSON of a build request's URL."""
    escaped = json.dumps(secret)[1:-1]
    forms = {secret, escaped}
    for text in (secret, escaped):
        forms |= {urllib.parse.quote(text, safe=""), urllib.parse.quote_plus(text, safe=""), urllib.parse.quote(text)}
    password = _url_password(secret)
    if password:
        forms |= _forms(password)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _url_password(value: str) -> str | None:
    try:
        password = urllib.parse.urlsplit(value.strip()).password
    except ValueError:
        return None
    if not password:
        return None
    return urllib.parse.unquote(password) if len(password) >= MIN_SECRET_LENGTH else None


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every form of each secret, and anything shaped like a credential, replaced
    by `***`. Longer forms are replaced first, so that no part of a longer one survives."""
    forms: set[str] = set()
    for secret in secrets:
        if len(secret) >= MIN_SECRET_LENGTH:
            forms |= _forms(secret)
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, MASK)
    text = _URL_USERINFO.sub(rf"\1:{MASK}@", text)
    text = _AWS_AUTH.sub(rf"\1={MASK}", text)
    return _AUTH_HEADER.sub(rf"\1\2{MASK}", text)
