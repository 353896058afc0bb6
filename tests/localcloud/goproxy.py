"""A Go module proxy on loopback, speaking the GOPROXY protocol, serving modules committed here.

Module sources live in `gomodules/<module path>@<version>/` next to this file (a go.mod and .go
files); `ModuleProxy.start` zips them (deterministically: sorted entries, fixed dates and modes,
stored uncompressed) and serves, per https://go.dev/ref/mod#goproxy-protocol:

    $module/@v/list           known versions, one a line
    $module/@v/$version.info  {"Version": ..., "Time": FIXED_TIME}
    $module/@v/$version.mod   the go.mod
    $module/@v/$version.zip   files under `$module@$version/`
    $module/@latest           .info of the highest release

Module paths and versions arrive case-encoded ("!x" for "X"). Unknown modules answer 404, unknown
versions of a known module 410; the go command treats both as "not found".

Modules under a private prefix (`private.example.test`) are served only with HTTP basic auth, on
every endpoint and before anything else is looked at: 401 with `WWW-Authenticate` otherwise. Error
bodies never repeat what the client sent (no password, no Authorization header).

The go command sends credentials (from NETRC or any GOAUTH method) only over HTTPS, and matches a
netrc `machine` against the URL's host *with its port*. So the proxy serves HTTPS when given a
`tls_dir`, holding a CA and a certificate for 127.0.0.1 it signed (`ensure_tls_files`: reused when
present and valid, made otherwise), and clients trust the CA with `SSL_CERT_FILE=<ca_file>` (the go
command on this machine), `verify=<ca_file>` (requests), or a CA bundle that includes it (the
stand-in builder image, standins.py). Over plain HTTP the public modules work, but the go command
can never fetch a private one.

The local cloud uses one such directory per machine, `TLS_DIR` (mode 0700), made once and kept
across runs: the stand-in builder image bakes the CA in, so a CA made per run would rebuild it on
every run. Processes starting at once (pytest-xdist workers) agree on it: whoever finds it missing
or broken takes a lock file, makes a new one in a temporary directory next to it and renames that
into place, so a reader sees either no directory or a complete one.

`go_sum_lines` gives the go.sum lines of a served module (golang.org/x/mod/sumdb/dirhash Hash1),
so committed go.sum files can be checked against the modules without a go command.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import hashlib
import hmac
import io
import ipaddress
import json
import os
import re
import secrets
import shutil
import ssl
import stat
import sys
import tempfile
import threading
import time
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Iterable, Iterator, Sequence

from cryptography import x509  # the test extras (moto[server] needs it too)
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK = "127.0.0.1"
GOMODULES = Path(__file__).with_name("gomodules")
PRIVATE_PREFIXES = ("private.example.test",)
# The .info Time of every version: fixed, so that answers are the same on every run.
FIXED_TIME = "2024-01-01T00:00:00Z"
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
REALM = "deployer-localcloud goproxy"
# The machine's CA and server certificate: long-lived, made again only when broken or about to expire.
TLS_DIR = Path(tempfile.gettempdir()) / "deployer-localcloud-tls"
TLS_VALID_DAYS = 3650
TLS_RENEW_DAYS = 30  # a certificate expiring sooner than this counts as broken
TLS_LOCK_TIMEOUT_SECONDS = 60.0
SOCKET_TIMEOUT_SECONDS = 10.0

_SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


# -- module path encoding ------------------------------------------------------------------


def escape_path(path: str) -> str:
    """Go's module.EscapePath for paths and versions in proxy URLs: "X" becomes "!x"."""
    return re.sub(r"[A-Z]", lambda m: "!" + m.group(0).lower(), path)


def unescape_path(escaped: str) -> str | None:
    """Go's module.UnescapePath: "!x" becomes "X"; None when `escaped` is not a valid encoding
    (an upper-case letter, or "!" not followed by a lower-case letter)."""
    out: list[str] = []
    bang = False
    for ch in escaped:
        if bang:
            if not ("a" <= ch <= "z"):
                return None
            out.append(ch.upper())
            bang = False
        elif ch == "!":
            bang = True
        elif "A" <= ch <= "Z":
            return None
        else:
            out.append(ch)
    return None if bang else "".join(out)


def semver_key(version: str) -> tuple[Any, ...]:
    """Sort key for semantic versions ("v1.2.3", "v1.2.3-rc.1"); a release sorts after its
    pre-releases. Raises ValueError for anything else."""
    match = _SEMVER.match(version)
    if match is None:
        raise ValueError(f"not a semantic version: {version!r}")
    major, minor, patch, pre = match.groups()
    pre_key: tuple[Any, ...] = (1,) if pre is None else (0, *((0, int(p), "") if p.isdigit() else (1, 0, p)
                                                              for p in pre.split(".")))
    return (int(major), int(minor), int(patch), pre_key)


# -- hashes (golang.org/x/mod/sumdb/dirhash) -----------------------------------------------


def hash1(files: Iterable[tuple[str, bytes]]) -> str:
    """dirhash.Hash1: sha256 over the sorted lines "<sha256 hex of content>  <name>\\n", as
    "h1:<base64>". Names are as the go command sees them: zip entry names, or "go.mod"."""
    summary = hashlib.sha256()
    for name, data in sorted(files, key=lambda item: item[0]):
        if "\n" in name:
            raise ValueError(f"file name with a newline: {name!r}")
        summary.update(f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode())
    return "h1:" + base64.b64encode(summary.digest()).decode()


def zip_hash(data: bytes) -> str:
    """dirhash.HashZip: Hash1 of a module zip's files, named as in the zip."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return hash1((info.filename, archive.read(info)) for info in archive.infolist() if not info.is_dir())


def mod_hash(mod: bytes) -> str:
    """The `/go.mod h1:` hash: Hash1 of one file named "go.mod"."""
    return hash1([("go.mod", mod)])


# -- modules -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GoModule:
    """One version of a module, as served."""

    path: str
    version: str
    mod: bytes
    zip: bytes = field(repr=False)

    @property
    def info(self) -> bytes:
        return json.dumps({"Version": self.version, "Time": FIXED_TIME}).encode()

    def go_sum_lines(self) -> list[str]:
        return [f"{self.path} {self.version} {zip_hash(self.zip)}",
                f"{self.path} {self.version}/go.mod {mod_hash(self.mod)}"]


def module_zip(path: str, version: str, source: Path) -> bytes:
    """The module zip of the files under `source`: entries `path@version/<file>`, sorted, with a
    fixed date and mode and no compression, so the same files always give the same bytes."""
    files = sorted((p.relative_to(source).as_posix(), p) for p in source.rglob("*") if p.is_file())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for rel, file in files:
            info = zipfile.ZipInfo(f"{path}@{version}/{rel}", date_time=ZIP_DATE_TIME)
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, so the mode above is what readers see
            archive.writestr(info, file.read_bytes())
    return buffer.getvalue()


def load_module(path: str, version: str, modules_dir: Path = GOMODULES) -> GoModule:
    """The module in `modules_dir/<path>@<version>/`, checked: its go.mod names `path`."""
    source = modules_dir / f"{path}@{version}"
    semver_key(version)
    mod = (source / "go.mod").read_bytes()
    declared = re.search(rb"^module\s+(\S+)\s*$", mod, re.M)
    if declared is None or declared.group(1).decode().strip('"') != path:
        raise ValueError(f"{source}/go.mod does not declare module {path}")
    return GoModule(path, version, mod, module_zip(path, version, source))


def load_modules(modules_dir: Path = GOMODULES) -> dict[str, dict[str, GoModule]]:
    """Every `<module path>@<version>` directory under `modules_dir`: {path: {version: module}}."""
    modules: dict[str, dict[str, GoModule]] = {}
    for go_mod in sorted(modules_dir.rglob("go.mod")):
        rel = go_mod.parent.relative_to(modules_dir).as_posix()
        path, at, version = rel.rpartition("@")
        if not at:
            continue  # a nested directory of a module, not a module
        modules.setdefault(path, {})[version] = load_module(path, version, modules_dir)
    return modules


def go_sum_lines(module: str, version: str, modules_dir: Path = GOMODULES) -> list[str]:
    """The two go.sum lines of a served module: `<module> <version> h1:...` (its zip) and
    `<module> <version>/go.mod h1:...` (its go.mod)."""
    return load_module(module, version, modules_dir).go_sum_lines()


def write_netrc(path: Path, host: str, user: str, password: str) -> Path:
    """Write a netrc (mode 0600) with one machine. For the go command `host` must be the proxy's
    host *and port* (`ModuleProxy.host`): it matches machines against "host:port"."""
    for name, value in (("host", host), ("user", user), ("password", password)):
        if not value or any(ch.isspace() for ch in value):
            raise ValueError(f"netrc {name} must be non-empty and without whitespace")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # also when the file existed with another mode
        out.write(f"machine {host}\nlogin {user}\npassword {password}\n")
    return path


# -- TLS -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path  # the CA certificate (PEM): what clients trust
    cert_file: Path  # the server's certificate (PEM), for 127.0.0.1 and localhost
    key_file: Path  # its private key (PEM), mode 0600

    @classmethod
    def in_dir(cls, directory: Path) -> TlsFiles:
        return cls(directory / "goproxy-ca.pem", directory / "goproxy-cert.pem", directory / "goproxy-key.pem")


def _write_private(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def make_tls_files(directory: Path, valid_days: int = TLS_VALID_DAYS,
                   now: datetime.datetime | None = None) -> TlsFiles:
    """A new CA and a server certificate it signed (for 127.0.0.1 and localhost), valid for
    `valid_days` from `now`, written into `directory` (made if missing; the files must not exist).
    The CA's private key signs once and is forgotten: nothing else can ever be issued by it."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=valid_days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "deployer-localcloud goproxy CA"),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, secrets.token_hex(8))])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, LOOPBACK)]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK)),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = TlsFiles.in_dir(directory)
    _write_private(files.key_file, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()), 0o600)
    _write_private(files.cert_file, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    _write_private(files.ca_file, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return files


def _private_dir(path: Path) -> bool:
    """A real directory (no symlink) of this user that nobody else can read or write."""
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077 == 0


def _regular_file(path: Path) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_size > 1 << 16:
            return None
        return f.read()


def _validity(cert: x509.Certificate) -> tuple[datetime.datetime, datetime.datetime]:
    """not_valid_before/after, timezone-aware (the *_utc properties are new in cryptography 42)."""
    before, after = getattr(cert, "not_valid_before_utc", None), getattr(cert, "not_valid_after_utc", None)
    if before is None or after is None:
        utc = datetime.timezone.utc
        before, after = cert.not_valid_before.replace(tzinfo=utc), cert.not_valid_after.replace(tzinfo=utc)
    return before, after


def load_tls_files(directory: Path, renew_days: int = TLS_RENEW_DAYS,
                   now: datetime.datetime | None = None) -> TlsFiles | None:
    """The TLS files in `directory` when they are complete and usable: a private directory of
    this user, a CA certificate, a server certificate for 127.0.0.1 that it signed, valid now and
    for `renew_days` more, and the private key of that certificate (mode 0600). None otherwise."""
    if not _private_dir(directory):
        return None
    files = TlsFiles.in_dir(directory)
    ca_pem, cert_pem, key_pem = (_regular_file(p) for p in (files.ca_file, files.cert_file, files.key_file))
    if ca_pem is None or cert_pem is None or key_pem is None:
        return None
    if stat.S_IMODE(files.key_file.lstat().st_mode) & 0o077:
        return None
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        ca = x509.load_pem_x509_certificate(ca_pem)
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        for certificate in (ca, cert):
            not_before, not_after = _validity(certificate)
            if not (not_before <= now and now + datetime.timedelta(days=renew_days) < not_after):
                return None
        if not ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return None
        cert.verify_directly_issued_by(ca)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if ipaddress.ip_address(LOOPBACK) not in names.get_values_for_type(x509.IPAddress):
            return None
        if key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
                != cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            return None
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return None
    return files


@contextlib.contextmanager
def _locked(path: Path, timeout: float = TLS_LOCK_TIMEOUT_SECONDS) -> Iterator[None]:
    """An exclusive flock on `path` (made if missing, never through a symlink); bounded wait."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} stayed locked for {timeout:.0f}s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _discard(path: Path) -> None:
    """Move `path` (anything, or nothing) out of the way, then delete it."""
    aside = path.with_name(f".{path.name}.broken-{secrets.token_hex(4)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if aside.is_symlink() or not aside.is_dir():
        aside.unlink(missing_ok=True)
    else:
        shutil.rmtree(aside, ignore_errors=True)


def ensure_tls_files(directory: Path = TLS_DIR) -> TlsFiles:
    """The TLS files in `directory` (see `load_tls_files`), made there when missing or broken.

    Safe when processes race: the files are made in a temporary directory next to `directory`
    and renamed into place under a lock file (`<directory>.lock`), and a process that finds a
    valid directory, with or without waiting for the lock, uses it as it is."""
    found = load_tls_files(directory)
    if found is not None:
        return found
    directory.parent.mkdir(parents=True, exist_ok=True)
    with _locked(directory.with_name(directory.name + ".lock")):
        found = load_tls_files(directory)  # made while this process waited for the lock
        if found is not None:
            return found
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.new-", dir=directory.parent))  # mode 0700
        try:
            make_tls_files(staging)
            if os.path.lexists(directory):
                try:
                    _discard(directory)
                except OSError as exc:
                    raise RuntimeError(f"{directory} holds no usable TLS files and cannot be replaced ({exc}); "
                                       "remove it") from None
            try:
                os.rename(staging, directory)
            except OSError:
                # Someone made it without the lock (it cannot be us): accept the winner's if it is valid.
                found = load_tls_files(directory)
                if found is None:
                    raise
                return found
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    found = load_tls_files(directory)
    if found is None:
        raise RuntimeError(f"made TLS files in {directory}, but they do not check out")
    return found


# -- the server ----------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, proxy: ModuleProxy, tls: ssl.SSLContext | None) -> None:
        super().__init__((LOOPBACK, 0), _Handler)
        self.proxy = proxy
        self.tls = tls

    def finish_request(self, request: Any, client_address: Any) -> None:
        # Runs on the connection's own thread: a slow or broken TLS handshake stalls only it.
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(SOCKET_TIMEOUT_SECONDS)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # a client that does not trust the CA, or hung up
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError, ssl.SSLError)):
            return  # a client that hung up mid-answer; nothing to report
        super().handle_error(request, client_address)  # a bug here: print its traceback


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = SOCKET_TIMEOUT_SECONDS

    def do_GET(self) -> None:
        status, content_type, body, headers = self.server.proxy.answer(self.path, self.headers.get("Authorization"))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.server.proxy.record(self.path, status)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - keep test output clean
        pass


Answer = tuple[int, str, bytes, dict[str, str]]  # status, content type, body, extra headers
TEXT = "text/plain; charset=utf-8"


def _text(status: int, message: str, headers: dict[str, str] | None = None) -> Answer:
    return status, TEXT, (message + "\n").encode(), headers or {}


class ModuleProxy:
    """A GOPROXY on 127.0.0.1 (a free port) serving the modules in `modules_dir`; see the module
    docstring. `with ModuleProxy(user, password, tls_dir=dir) as proxy: ... proxy.url ...`

    Modules whose path is, or is under, one of `private` need basic auth with `user`/`password`."""

    def __init__(self, user: str, password: str, *, modules_dir: Path = GOMODULES,
                 private: Sequence[str] = PRIVATE_PREFIXES, tls_dir: Path | None = None) -> None:
        if not user or not password:
            raise ValueError("ModuleProxy needs a user and a password for its private modules")
        self._user = user.encode()
        self._password = password.encode()
        self.modules_dir = modules_dir
        self.private = tuple(private)
        self.tls_dir = tls_dir
        self.tls: TlsFiles | None = None
        self.modules: dict[str, dict[str, GoModule]] = {}
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.served: list[tuple[str, int]] = []  # (request path, status), in order

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> ModuleProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> ModuleProxy:
        if self._server is not None:
            return self
        self.modules = load_modules(self.modules_dir)
        context = None
        if self.tls_dir is not None:
            self.tls = ensure_tls_files(self.tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(self.tls.cert_file, self.tls.key_file)
        self._server = _Server(self, context)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.1,), name="localcloud-goproxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=SOCKET_TIMEOUT_SECONDS)
        self._server = None
        self._thread = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("ModuleProxy is not started")
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        """127.0.0.1:PORT: the netrc machine the go command looks up for this proxy."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def url(self) -> str:
        """The GOPROXY value: https://127.0.0.1:PORT with a tls_dir, http://127.0.0.1:PORT without."""
        return f"{'https' if self.tls is not None else 'http'}://{self.host}"

    @property
    def ca_file(self) -> Path | None:
        """The CA certificate clients must trust (SSL_CERT_FILE); None over plain HTTP."""
        return self.tls.ca_file if self.tls is not None else None

    def is_private(self, module: str) -> bool:
        return any(module == p or module.startswith(p + "/") for p in self.private)

    def go_sum_lines(self, module: str, version: str) -> list[str]:
        return self.modules[module][version].go_sum_lines()

    def record(self, path: str, status: int) -> None:
        with self._lock:
            self.served.append((path, status))

    # -- the protocol ------------------------------------------------------------------------
    def answer(self, raw_path: str, authorization: str | None) -> Answer:
        """The answer to GET `raw_path` (the request target) with that Authorization header."""
        path = urllib.parse.unquote(urllib.parse.urlsplit(raw_path).path).strip("/")
        if path.endswith("/@latest"):
            escaped_module, what = path[: -len("/@latest")], "@latest"
        else:
            escaped_module, sep, what = path.partition("/@v/")
            if not sep or not what:
                return _text(404, "not found: not a module proxy request")
        module = unescape_path(escaped_module)
        if not module:
            return _text(404, "not found: invalid module path encoding")
        if self.is_private(module) and not self._authorized(authorization):
            # Before anything else: nothing about a private module is told without credentials.
            return _text(401, f"unauthorized: {module} is private; give credentials (a netrc for this host)",
                         {"WWW-Authenticate": f'Basic realm="{REALM}"'})
        versions = self.modules.get(module)
        if versions is None:
            return _text(404, f"not found: module {module} is not served here")
        if what == "list":
            listing = "".join(v + "\n" for v in sorted(versions, key=semver_key))
            return 200, TEXT, listing.encode(), {}
        if what == "@latest":
            releases = [v for v in versions if "-" not in v.split("+")[0]] or list(versions)
            return 200, "application/json", versions[max(releases, key=semver_key)].info, {}
        escaped_version, dot, ext = what.rpartition(".")
        version = unescape_path(escaped_version) if dot else None
        if version is None or "/" in version or ext not in ("info", "mod", "zip"):
            return _text(404, "not found: unknown request")
        found = versions.get(version)
        if found is None:
            return _text(410, f"not found: {module}@{version}: unknown version")
        if ext == "info":
            return 200, "application/json", found.info, {}
        if ext == "mod":
            return 200, TEXT, found.mod, {}
        return 200, "application/zip", found.zip, {}

    def _authorized(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(token.strip(), validate=True).partition(b":")
        except ValueError:
            return False
        # Both compared in full, in constant time.
        ok_user = hmac.compare_digest(user, self._user)
        ok_password = hmac.compare_digest(password, self._password)
        return bool(sep) and ok_user and ok_password


__all__ = ["ModuleProxy", "GoModule", "TlsFiles", "GOMODULES", "FIXED_TIME", "PRIVATE_PREFIXES",
           "escape_path", "unescape_path", "semver_key", "hash1", "zip_hash", "mod_hash", "module_zip",
           "load_module", "load_modules", "go_sum_lines", "write_netrc", "make_tls_files", "load_tls_files",
           "ensure_tls_files", "TLS_DIR"]
