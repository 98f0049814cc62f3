"""Test helpers around a real OCI registry: Debian's `docker-registry` on a free loopback port.

- LocalRegistry: the registry with a temp storage dir, plain, with token auth (a small JWT token
  server it trusts) or with htpasswd basic auth; optionally over TLS with a self-signed cert.
  stop() leaves no process and no temp dir; kill() is a SIGKILL that keeps the storage so start()
  brings the same registry back on the same port.
- TokenServer: the token endpoint of the Docker token flow (GET with basic auth or anonymous, POST
  with an OAuth2 refresh token), issuing ES256 JWTs with an x5c header the registry verifies
  against its rootcertbundle.
- RecordingProxy: an HTTP proxy in front of a registry that records every request (method, path,
  Range, status, bytes), can throttle response bodies, and can require basic auth itself.

The servers written here run in their own thread with their own event loop, so they serve while
a test's loop is busy or blocked.
"""
from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from kubelab.lab.controlplane import free_port, wait_port

REGISTRY_BIN = "/usr/bin/docker-registry"
USERS = {"kubelab": "s3cret-pw"}
REFRESH_TOKENS = {"kubelab-refresh-token": "kubelab"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def self_signed_cert(cn: str, sans: list[str], dest: Path) -> tuple[Path, Path, ec.EllipticCurvePrivateKey,
                                                                        x509.Certificate]:
    """A P-256 key and a self-signed cert (usable as its own CA) written as PEM under dest."""
    import ipaddress
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    alt: list[x509.GeneralName] = []
    for s in sans:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            alt.append(x509.DNSName(s))
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    dest.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = dest / f"{cn}.crt", dest / f"{cn}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path, key, cert


class _ThreadServer:
    """An aiohttp app served on 127.0.0.1:<port> by a dedicated thread and event loop."""

    def __init__(self) -> None:
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def _app(self) -> web.Application:
        raise NotImplementedError

    async def _on_stop(self) -> None:
        pass

    def start(self) -> None:
        ready = threading.Event()
        errors: list[BaseException] = []
        self.port = self.port or free_port()

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
                loop.run_until_complete(self._runner.setup())
                loop.run_until_complete(web.TCPSite(self._runner, "127.0.0.1", self.port).start())
            except BaseException as e:  # reported to start()
                errors.append(e)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._on_stop())
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

        self._thread = threading.Thread(target=main, name=type(self).__name__, daemon=True)
        self._thread.start()
        ready.wait(10)
        if errors:
            self._thread.join()
            raise RuntimeError(f"{type(self).__name__} failed to start: {errors[0]}")

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._loop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(15)
        assert not self._thread.is_alive(), f"{type(self).__name__} thread did not stop"
        self._thread = None


class TokenServer(_ThreadServer):
    """The registry's token realm. GET /token?service=&scope= with basic auth (or none) answers
    {"token": jwt}; POST /token (grant_type=refresh_token or password) answers {"access_token": jwt}.
    Known users get every action they ask for; anonymous callers get a token with no access (the
    registry then refuses them); a wrong password is a 401 from the token server itself."""

    def __init__(self, service: str, issuer: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate,
                 users: dict[str, str], expires_in: int = 300) -> None:
        super().__init__()
        self.service, self.issuer, self.key, self.cert = service, issuer, key, cert
        self.users = dict(users)
        self.expires_in = expires_in
        self.requests: list[dict] = []

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def _app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self._get)
        app.router.add_post("/token", self._post)
        return app

    def _sign(self, subject: str, scopes: list[str], granted: bool) -> str:
        access = []
        for scope in scopes:
            parts = scope.split(":")
            if len(parts) < 3 or not granted:
                continue
            access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")})
        now = int(time.time())
        header = {"typ": "JWT", "alg": "ES256",
                  "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()]}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _record(self, request: web.Request, kind: str, user: str, scopes: list[str], status: int) -> None:
        self.requests.append({"method": request.method, "kind": kind, "user": user, "scopes": scopes,
                              "status": status})

    async def _get(self, request: web.Request) -> web.Response:
        scopes = request.query.getall("scope", [])
        header = request.headers.get("Authorization", "")
        user = ""
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(user) != password:
                self._record(request, "basic", user, scopes, 401)
                return web.json_response({"details": "incorrect username or password"}, status=401)
        self._record(request, "basic" if user else "anonymous", user, scopes, 200)
        token = self._sign(user, scopes, granted=bool(user))
        return web.json_response({"token": token, "expires_in": self.expires_in,
                                  "issued_at": datetime.datetime.now(datetime.timezone.utc).isoformat()})

    async def _post(self, request: web.Request) -> web.Response:
        form = await request.post()
        scopes = " ".join(form.getall("scope", [])).split()
        grant = form.get("grant_type", "")
        user = ""
        if grant == "refresh_token":
            user = REFRESH_TOKENS.get(str(form.get("refresh_token", "")), "")
        elif grant == "password" and self.users.get(str(form.get("username", ""))) == form.get("password"):
            user = str(form.get("username"))
        if not user:
            self._record(request, f"oauth-{grant}", "", scopes, 401)
            return web.json_response({"error": "invalid_grant"}, status=401)
        self._record(request, f"oauth-{grant}", user, scopes, 200)
        return web.json_response({"access_token": self._sign(user, scopes, True), "expires_in": self.expires_in,
                                  "scope": " ".join(scopes)})


def _bcrypt_htpasswd(users: dict[str, str]) -> str | None:
    """htpasswd lines with bcrypt hashes (the only kind docker-registry accepts): libxcrypt's $2b$
    through the stdlib crypt module, else the `htpasswd` tool; None if neither can."""
    lines = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt  # noqa: PLC0415 (deprecated, still in 3.11/3.12)
        for user, pw in users.items():
            h = crypt.crypt(pw, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
            if not h or not h.startswith("$2"):
                raise ValueError("no bcrypt")
            lines.append(f"{user}:{h}")
        return "\n".join(lines) + "\n"
    except (ImportError, ValueError, AttributeError):
        pass
    tool = shutil.which("htpasswd")
    if not tool:
        return None
    for user, pw in users.items():
        out = subprocess.run([tool, "-nbB", user, pw], capture_output=True, text=True, check=True).stdout
        lines.append(out.strip())
    return "\n".join(lines) + "\n"


def htpasswd_supported() -> bool:
    return _bcrypt_htpasswd({"probe": "probe"}) is not None


class LocalRegistry:
    """docker-registry on 127.0.0.1:<free port> (or `listen` host) with storage in a temp dir.

    token_auth: the registry trusts a TokenServer started beside it (users: USERS).
    htpasswd: basic auth from an htpasswd file (bcrypt); raises RuntimeError if unsupported.
    tls: serve HTTPS with a self-signed cert (ca_file is the cert to trust).
    LocalRegistry.temp_dirs lists every temp dir ever made, for leak checks."""

    temp_dirs: list[Path] = []

    def __init__(self, token_auth: bool = False, htpasswd: bool = False, tls: bool = False,
                 listen: str = "127.0.0.1", users: dict[str, str] | None = None) -> None:
        self.token_auth, self.htpasswd, self.tls, self.listen = token_auth, htpasswd, tls, listen
        self.users = dict(users or USERS)
        self.port = 0
        self.tmp: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.token_server: TokenServer | None = None
        self.ca_file: Path | None = None
        self.service = "kubelab-registry"
        self.issuer = "kubelab-token-issuer"

    @property
    def host(self) -> str:
        return f"{self.listen}:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def log_path(self) -> Path:
        assert self.tmp is not None
        return self.tmp / "registry.log"

    def _configure(self) -> Path:
        assert self.tmp is not None
        storage = self.tmp / "storage"
        storage.mkdir(exist_ok=True)
        lines = ["version: 0.1", "log:", "  level: info", "  accesslog:", "    disabled: false",
                 "storage:", "  filesystem:", f"    rootdirectory: {storage}", "  delete:", "    enabled: true",
                 "  maintenance:", "    uploadpurging:", "      enabled: false",
                 "http:", f"  addr: {self.listen}:{self.port}", f"  secret: {secrets.token_hex(16)}"]
        if self.tls:
            cert, key, _, _ = self_signed_cert(self.listen, [self.listen, "localhost", "127.0.0.1"],
                                               self.tmp / "tls")
            self.ca_file = cert
            lines += ["  tls:", f"    certificate: {cert}", f"    key: {key}"]
        if self.token_auth:
            cert, _, key, cert_obj = self_signed_cert("kubelab-token-signer", [], self.tmp / "token")
            if self.token_server is None:
                self.token_server = TokenServer(self.service, self.issuer, key, cert_obj, self.users)
            else:  # restart: keep the realm's port, new key
                self.token_server.key, self.token_server.cert = key, cert_obj
            self.token_server.start()
            lines += ["auth:", "  token:", f"    realm: {self.token_server.realm}", f"    service: {self.service}",
                      f"    issuer: {self.issuer}", f"    rootcertbundle: {cert}"]
        elif self.htpasswd:
            content = _bcrypt_htpasswd(self.users)
            if content is None:
                raise RuntimeError("no bcrypt available for an htpasswd file (install apache2-utils)")
            (self.tmp / "htpasswd").write_text(content)
            lines += ["auth:", "  htpasswd:", "    realm: kubelab-registry", f"    path: {self.tmp / 'htpasswd'}"]
        conf = self.tmp / "config.yml"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> "LocalRegistry":
        """Start (or, after kill(), restart on the same port with the same storage)."""
        if self.tmp is None:
            self.tmp = Path(tempfile.mkdtemp(prefix="kubelab-registry-"))
            LocalRegistry.temp_dirs.append(self.tmp)
            self.port = free_port(self.listen)
        try:
            conf = self._configure()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen([REGISTRY_BIN, "serve", str(conf)], stdout=log, stderr=log,
                                             stdin=subprocess.DEVNULL, start_new_session=True)
            wait_port(self.listen, self.port, self.proc, 15, self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL the registry (its storage stays; start() brings it back)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        if self.token_server:
            self.token_server.stop()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.token_server:
            self.token_server.stop()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    async def push(self, layout: Path, name: str) -> str:
        """Push an OCI layout (dir or tar, e.g. from kubelab.cri.image.build) as <host>/<name> with
        RegistryClient.push_layout, using the registry's own user when it needs auth. Returns the
        manifest digest."""
        from kubelab.cri.image.reference import parse
        from kubelab.cri.image.registry import Auth, RegistryClient
        user, password = next(iter(self.users.items()))
        auth = Auth(username=user, password=password) if (self.token_auth or self.htpasswd) else None
        client = RegistryClient(ca_file=self.ca_file)
        try:
            return await client.push_layout(Path(layout), parse(f"{self.host}/{name}"), auth)
        finally:
            await client.close()

    def __enter__(self) -> "LocalRegistry":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class ProxyRecord:
    method: str
    path: str
    range: str | None
    status: int = 0
    bytes: int = 0
    complete: bool = False


class RecordingProxy(_ThreadServer):
    """Forwards every request to `upstream` (host:port, plain HTTP) and records it in `log`.

    throttle: bytes per second for response bodies larger than 1 MiB (None: full speed).
    basic_auth: (user, password) required from clients, answered with a Basic challenge.
    strip_range: drop Range headers (the proxy then acts as a registry that cannot resume).
    manifest_headers: response headers replaced on manifest responses (e.g. a lying digest).
    When the upstream dies mid-body the client's connection is aborted, as it would be by the
    registry itself; when it cannot be reached the client's connection is closed unanswered."""

    def __init__(self, upstream: str, throttle: float | None = None, basic_auth: tuple[str, str] | None = None,
                 strip_range: bool = False, manifest_headers: dict[str, str] | None = None) -> None:
        super().__init__()
        self.upstream, self.throttle, self.basic_auth = upstream, throttle, basic_auth
        self.strip_range = strip_range
        self.manifest_headers = dict(manifest_headers or {})
        self.log: list[ProxyRecord] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def blob_gets(self, digest: str) -> list[ProxyRecord]:
        return [r for r in self.log if r.method == "GET" and r.path.endswith(f"/blobs/{digest}")]

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    async def _on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rec = ProxyRecord(request.method, request.path_qs, request.headers.get("Range"))
        self.log.append(rec)
        if self.basic_auth is not None:
            want = "Basic " + base64.b64encode(":".join(self.basic_auth).encode()).decode()
            if request.headers.get("Authorization") != want:
                rec.status = 401
                return web.json_response(
                    {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, status=401,
                    headers={"WWW-Authenticate": 'Basic realm="kubelab-proxy"'})
        if self._session is None:
            self._session = aiohttp.ClientSession(auto_decompress=False,
                                                  timeout=aiohttp.ClientTimeout(total=None, sock_read=30))
        drop = {"connection", "transfer-encoding", "content-length", "keep-alive"}
        if self.basic_auth is not None:  # the proxy's own credentials stop here
            drop.add("authorization")
        if self.strip_range:
            drop.add("range")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in drop}
        body = await request.read() if request.body_exists else None
        try:
            upstream = await self._session.request(request.method, f"http://{self.upstream}{request.path_qs}",
                                                   headers=headers, data=body, allow_redirects=False)
        except aiohttp.ClientError:
            rec.status = -1
            if request.transport:  # closed unanswered, as by a registry that just died
                request.transport.abort()
            return web.Response(status=502)
        async with upstream:
            rec.status = upstream.status
            resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
            override = self.manifest_headers if "/manifests/" in request.path else {}
            for k, v in upstream.headers.items():
                if k.lower() not in ("transfer-encoding", "connection", "keep-alive") and k not in override:
                    resp.headers.add(k, v)
            resp.headers.update(override)
            await resp.prepare(request)
            big = int(upstream.headers.get("Content-Length", "0") or 0) > (1 << 20)
            try:
                async for chunk in upstream.content.iter_chunked(64 << 10):
                    await resp.write(chunk)
                    rec.bytes += len(chunk)
                    if self.throttle and big:
                        await asyncio.sleep(len(chunk) / self.throttle)
            except (aiohttp.ClientError, asyncio.TimeoutError):
                if request.transport:  # the client sees the connection drop mid-body
                    request.transport.abort()
                return resp
            await resp.write_eof()
            rec.complete = True
            return resp


# --- images made by tests -------------------------------------------------------------------------

def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_layout(dest: Path, blobs: dict[str, bytes], manifest_descs: list[dict]) -> Path:
    """An OCI image layout directory: oci-layout, index.json listing manifest_descs, blobs/sha256/."""
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    for digest, data in blobs.items():
        (dest / "blobs" / "sha256" / digest.split(":", 1)[1]).write_bytes(data)
    (dest / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (dest / "index.json").write_text(json.dumps({"schemaVersion": 2,
                                                 "mediaType": "application/vnd.oci.image.index.v1+json",
                                                 "manifests": manifest_descs}))
    return dest


def wait_for(pred: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


async def async_wait_for(pred: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        await asyncio.sleep(interval)
    return pred()


__all__ = ["LocalRegistry", "TokenServer", "RecordingProxy", "ProxyRecord", "USERS", "REFRESH_TOKENS",
           "self_signed_cert", "htpasswd_supported", "write_layout", "sha256", "wait_for", "async_wait_for"]
