"""An OCI distribution v2 client over aiohttp: resolve manifests, fetch blobs, push image layouts.

What it does, following distribution's spec and containerd's docker remote where the spec is silent:
- Endpoints: the configured mirrors of a registry host, in order, then the host itself (docker.io is
  served by registry-1.docker.io). Mirrors are best effort: their errors are logged and the next
  endpoint is tried; the upstream host's answer decides.
- HTTPS, verified with the system CAs or ca_file. Insecure hosts (configured as host, host:port or
  CIDR, and every loopback host, as Docker does) skip verification and fall back to plain HTTP.
- Auth: a 401 challenge is remembered per endpoint host. Bearer: a token from the realm for the
  scope (GET with basic credentials or anonymous; POST with grant_type=refresh_token for an
  identity token), `token` or `access_token` accepted, cached per scope until it expires. Basic:
  username/password or the base64 `auth` field. A registry_token is sent as the bearer directly.
- Manifests: OCI index/manifest and Docker manifest list/schema 2 accepted; the digest is computed
  and checked against the reference's digest or Docker-Content-Digest; an index resolves to the
  manifest of the wanted platform.
- Blobs: streamed to a file, resumed with Range from the file's size when the registry answers 206,
  restarted otherwise. Digest verification is the caller's (ContentStore.commit).
- Push: blobs (HEAD to skip, POST then PUT monolithic) and manifests of an OCI layout dir or tar.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import logging
import platform as _platform
import re
import ssl
import tarfile
import tempfile
import time
import urllib.parse
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Callable, Iterable

import aiohttp

if TYPE_CHECKING:  # only the attributes domain/path/tag/digest/string() are used
    from kubelab.cri.image.reference import Reference

log = logging.getLogger("kubelab.cri.image.registry")

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
ACCEPT = ", ".join([DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX, "*/*"])

MAX_MANIFEST_SIZE = 4 << 20          # containerd's limit for manifests and indexes
CHUNK = 256 << 10
DOCKER_HUB = "registry-1.docker.io"
DOCKER_HUB_ALIASES = ("docker.io", "index.docker.io", "registry-1.docker.io")
USER_AGENT = "kubelab-cri/0.1"


class RegistryError(Exception):
    """A registry could not be reached or answered with an error; the message names the host."""


class ImageNotFound(RegistryError):
    """The repository, tag or digest does not exist."""


class Unauthorized(RegistryError):
    """The registry or its token server refused the credentials (or their absence)."""


@dataclass
class Auth:
    """CRI AuthConfig. server_address, when set, limits the credentials to that registry host."""
    username: str = ""
    password: str = ""
    auth: str = ""
    identity_token: str = ""
    registry_token: str = ""
    server_address: str = ""

    def credentials(self) -> tuple[str, str]:
        """(username, password), decoding the base64 "user:password" `auth` field if that is what was given."""
        if self.username or self.password:
            return self.username, self.password
        if self.auth:
            try:
                user, sep, pw = base64.b64decode(self.auth, validate=False).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise Unauthorized("invalid auth configuration: the auth field is not base64 of user:password") \
                    from None
            if not sep:
                raise Unauthorized("invalid auth configuration: the auth field is not base64 of user:password")
            return user, pw
        return "", ""

    def key(self) -> str:
        """A stable fingerprint of the credentials (for caches; the secret itself is not kept in keys)."""
        raw = "\0".join((self.username, self.password, self.auth, self.identity_token, self.registry_token))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]


# --- platforms ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
                 "i386": "386", "i486": "386", "i586": "386", "i686": "386", "386": "386",
                 "armhf": "arm", "armel": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}


def normalize_platform(os_: str, arch: str, variant: str = "") -> Platform:
    """containerd's platforms.Normalize: x86_64 -> amd64, aarch64 -> arm64 (variant v8 dropped),
    armv7l -> arm/v7, arm without variant -> arm/v7."""
    os_ = (os_ or "").lower()
    arch = (arch or "").lower()
    variant = (variant or "").lower()
    m = re.fullmatch(r"armv(\d+)l?", arch)
    if m:
        arch, variant = "arm", f"v{m.group(1)}"
    arch = _ARCH_ALIASES.get(arch, arch)
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    if arch == "arm":
        variant = variant or "v7"
        if variant.isdigit():
            variant = "v" + variant
    if arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(os_, arch, variant)


def host_platform() -> Platform:
    """linux/<this machine's architecture>, normalised."""
    return normalize_platform("linux", _platform.machine())


def _compatible(want: Platform) -> list[Platform]:
    """Platforms the host can run, best first (containerd's Only(): arm64 also runs arm v8..v5)."""
    out = [want]
    if want.architecture == "arm64":
        out += [Platform(want.os, "arm", v) for v in ("v8", "v7", "v6", "v5")]
    elif want.architecture == "arm" and want.variant[1:].isdigit():
        out += [Platform(want.os, "arm", f"v{n}") for n in range(int(want.variant[1:]) - 1, 4, -1)]
    return out


def select_platform(manifests: list[dict], want: Platform) -> dict | None:
    """The descriptor of an index's manifests that best matches `want`, or None."""
    order = _compatible(want)
    best: tuple[int, int] | None = None
    chosen = None
    for i, desc in enumerate(manifests):
        p = desc.get("platform") or {}
        got = normalize_platform(p.get("os", ""), p.get("architecture", ""), p.get("variant", ""))
        for rank, cand in enumerate(order):
            if got == cand:
                if best is None or (rank, i) < best:
                    best, chosen = (rank, i), desc
                break
    return chosen


# --- small helpers --------------------------------------------------------------------------------------

def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


_CHALLENGE_RE = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))')


def parse_challenges(header: str) -> list[tuple[str, dict[str, str]]]:
    """WWW-Authenticate -> [(scheme lowercased, {param: value})]."""
    out: list[tuple[str, dict[str, str]]] = []
    pos = 0
    header = header or ""
    scheme_re = re.compile(r'\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)')
    while pos < len(header):
        m = scheme_re.match(header, pos)
        if not m:
            break
        scheme, pos = m.group(1).lower(), m.end()
        params: dict[str, str] = {}
        while pos < len(header):
            pm = _CHALLENGE_RE.match(header, pos)
            if not pm:
                break
            value = pm.group(2) if pm.group(2) is not None else pm.group(3)
            params[pm.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = pm.end()
            sep = re.match(r"\s*,\s*", header[pos:])
            if not sep:
                break
            pos += sep.end()
            # a following "token " (no "=") starts the next challenge
            if re.match(r'[A-Za-z][A-Za-z0-9_-]*(?:\s+[A-Za-z]|\s*$)', header[pos:]) and \
                    not re.match(r'[A-Za-z][A-Za-z0-9_-]*\s*=', header[pos:]):
                break
        out.append((scheme, params))
    return out


def _server_message(body: bytes) -> str:
    """The first error of a distribution error body, as "code: message" (lowercase code)."""
    try:
        errs = json.loads(body or b"{}").get("errors") or []
    except (ValueError, AttributeError):
        return ""
    if not errs or not isinstance(errs[0], dict):
        return ""
    e = errs[0]
    return f"{str(e.get('code', '')).lower()}: {e.get('message', '')}".strip(": ")


def _is_loopback(host: str) -> bool:
    name = _hostname(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _hostname(host: str) -> str:
    """"host:port" / "[v6]:port" -> host (no brackets)."""
    if host.startswith("["):
        return host[1:host.index("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.rsplit(":", 1)[0]
    return host


def _describe(exc: BaseException) -> str:
    """A short reason for a transport error."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        err = exc.certificate_error
        return f"TLS certificate verification failed: {getattr(err, 'verify_message', '') or err}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = exc.os_error
        if isinstance(os_err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(os_err, ssl.SSLError):
            return f"TLS handshake failed: {os_err.reason or os_err}"
        return f"cannot connect: {os_err.strerror or os_err}" if isinstance(os_err, OSError) else str(exc)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "server closed the connection"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "connection lost mid-transfer"
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return "timed out"
    if isinstance(exc, aiohttp.ClientOSError):
        if isinstance(exc.__cause__, ConnectionResetError) or exc.errno == 104:
            return "connection reset"
        return f"connection error: {exc.strerror or exc}"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    return str(exc) or type(exc).__name__


_TRANSPORT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError,
                     ConnectionError)


# --- endpoints and auth state -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    host: str                 # host[:port]
    scheme: str | None        # None: https, or http after an https failure on an insecure host
    path: str = ""            # URL path prefix of a mirror (without /v2)
    mirror: bool = False


@dataclass
class _Token:
    value: str
    expires: float


class RegistryClient:
    """A distribution v2 client. One instance is shared by every pull of a runtime (its connection
    pool, learned auth challenges and token cache are per instance)."""

    def __init__(self, mirrors: dict[str, list[str]] | None = None, insecure: Iterable[str] | None = None,
                 ca_file: str | Path | None = None, connect_timeout: float = 30.0,
                 read_timeout: float = 60.0) -> None:
        self.mirrors = {self._canonical(k): list(v) for k, v in (mirrors or {}).items()}
        self.insecure_hosts: set[str] = set()
        self.insecure_nets: list[ipaddress._BaseNetwork] = []
        for item in insecure or ():
            item = item.strip().lower()
            if "://" in item:
                item = urllib.parse.urlsplit(item).netloc
            if "/" in item:
                try:
                    self.insecure_nets.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    log.warning("ignoring insecure registry %r: not a host, host:port or CIDR", item)
            elif item:
                self.insecure_hosts.add(item)
        self.ca_file = str(ca_file) if ca_file else None
        self._timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_connect=connect_timeout,
                                              sock_read=read_timeout)
        self._session: aiohttp.ClientSession | None = None
        self._verify_ctx: ssl.SSLContext | None = None
        self._schemes: dict[str, str] = {}
        self._challenges: dict[str, tuple[str, dict[str, str]]] = {}
        self._tokens: dict[tuple, _Token] = {}
        self._token_locks: dict[tuple, asyncio.Lock] = {}

    # ---- configuration

    @staticmethod
    def _canonical(domain: str) -> str:
        d = domain.lower()
        return "docker.io" if d in DOCKER_HUB_ALIASES else d

    def is_insecure(self, host: str) -> bool:
        host = host.lower()
        if _is_loopback(host) or host in self.insecure_hosts or _hostname(host) in self.insecure_hosts:
            return True
        try:
            ip = ipaddress.ip_address(_hostname(host))
        except ValueError:
            return False
        return any(ip in net for net in self.insecure_nets)

    def endpoints(self, domain: str) -> list[Endpoint]:
        """Mirrors of domain in order, then the registry itself."""
        out = []
        for m in self.mirrors.get(self._canonical(domain), []):
            if "://" not in m:
                m = "//" + m
            u = urllib.parse.urlsplit(m)
            path = u.path.rstrip("/")
            if path.endswith("/v2"):
                path = path[:-3]
            out.append(Endpoint(u.netloc, u.scheme or None, path, mirror=True))
        upstream = DOCKER_HUB if self._canonical(domain) == "docker.io" else domain
        out.append(Endpoint(upstream, None))
        return out

    def _ssl_for(self, host: str) -> ssl.SSLContext | bool:
        if self.is_insecure(host):
            return False
        if self._verify_ctx is None:
            self._verify_ctx = ssl.create_default_context(cafile=self.ca_file)
            if self.ca_file:  # the system CAs as well
                self._verify_ctx.load_default_certs()
        return self._verify_ctx

    def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, auto_decompress=False,
                                                  headers={"User-Agent": USER_AGENT})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- auth

    def _creds_for(self, ep: Endpoint, domain: str, auth: Auth | None) -> Auth | None:
        if auth is None:
            return None
        if auth.server_address:
            addr = auth.server_address
            host = urllib.parse.urlsplit(addr if "://" in addr else "//" + addr).netloc.lower()
            hosts = {ep.host.lower(), domain.lower()}
            if self._canonical(host) == "docker.io":
                host = "docker.io"
                hosts = {self._canonical(h) for h in hosts}
            if host not in hosts:
                return None
        return auth

    async def _authorization(self, ep: Endpoint, scope: str, auth: Auth | None) -> str | None:
        if auth is not None and auth.registry_token:
            return f"Bearer {auth.registry_token}"
        ch = self._challenges.get(ep.host)
        if ch is None:
            return None
        scheme, params = ch
        if scheme == "basic":
            user, pw = auth.credentials() if auth else ("", "")
            if not (user or pw):
                return None
            return "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
        if scheme == "bearer":
            return f"Bearer {await self._token(ep, params, scope, auth)}"
        return None

    async def _token(self, ep: Endpoint, params: dict[str, str], scope: str, auth: Auth | None) -> str:
        realm = params.get("realm", "")
        if not realm:
            raise Unauthorized(f"registry {ep.host}: bearer challenge without a realm")
        service = params.get("service", "")
        key = (realm, service, scope, auth.key() if auth else "")
        lock = self._token_locks.setdefault(key, asyncio.Lock())
        async with lock:
            tok = self._tokens.get(key)
            if tok is not None and tok.expires > time.monotonic():
                return tok.value
            tok = await self._fetch_token(realm, service, scope, auth)
            self._tokens[key] = tok
            return tok.value

    async def _fetch_token(self, realm: str, service: str, scope: str, auth: Auth | None) -> _Token:
        user, pw = auth.credentials() if auth else ("", "")
        session = self._session_get()
        realm_host = urllib.parse.urlsplit(realm).netloc
        ssl_arg = self._ssl_for(realm_host) if realm.startswith("https:") else False
        try:
            if auth is not None and auth.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": auth.identity_token, "service": service,
                        "client_id": "kubelab", "access_type": "offline"}
                if scope:
                    form["scope"] = scope
                what = "oauth token"
                req = session.post(realm, data=form, ssl=ssl_arg)
            else:
                query = [("service", service)] if service else []
                if scope:
                    query.append(("scope", scope))
                if user:
                    query.append(("account", user))
                headers = {}
                if user or pw:
                    headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
                what = "token" if (user or pw) else "anonymous token"
                req = session.get(realm, params=query, headers=headers, ssl=ssl_arg)
            async with req as resp:
                body = await resp.read()
                if resp.status in (401, 403):
                    raise Unauthorized(f"failed to fetch {what} from {realm}: {resp.status} {resp.reason}")
                if resp.status != 200:
                    raise RegistryError(f"failed to fetch {what} from {realm}: {resp.status} {resp.reason}")
        except _TRANSPORT_ERRORS as e:
            raise RegistryError(f"failed to fetch token from {realm_host}: {_describe(e)}") from None
        try:
            data = json.loads(body)
            value = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            value, data = None, {}
        if not value:
            raise RegistryError(f"token server {realm_host} answered without a token")
        try:
            expires_in = int(data.get("expires_in") or 60)
        except (TypeError, ValueError):
            expires_in = 60
        expires_in = max(expires_in, 60)  # the spec's minimum lifetime
        return _Token(str(value), time.monotonic() + expires_in - 10)

    def _forget_token(self, ep: Endpoint, scope: str, auth: Auth | None) -> None:
        ch = self._challenges.get(ep.host)
        if ch and ch[0] == "bearer":
            self._tokens.pop((ch[1].get("realm", ""), ch[1].get("service", ""), scope,
                              auth.key() if auth else ""), None)

    # ---- requests

    def _url(self, scheme: str, ep: Endpoint, path: str) -> str:
        if "://" in path:
            return path
        return f"{scheme}://{ep.host}{ep.path}{path}"

    async def _send_once(self, ep: Endpoint, method: str, path: str, headers: dict[str, str],
                         data: bytes | Path | None, opened: list) -> aiohttp.ClientResponse:
        session = self._session_get()
        if "://" in path:
            schemes = [urllib.parse.urlsplit(path).scheme]
        elif ep.scheme:
            schemes = [ep.scheme]
        elif ep.host in self._schemes:
            schemes = [self._schemes[ep.host]]
        else:
            schemes = ["https", "http"] if self.is_insecure(ep.host) else ["https"]
        last: BaseException | None = None
        for i, scheme in enumerate(schemes):
            url = self._url(scheme, ep, path)
            body: object = data
            if isinstance(data, Path):
                body = open(data, "rb")
                opened.append(body)
            try:
                resp = await session.request(method, url, headers=headers, data=body,
                                             ssl=self._ssl_for(ep.host) if scheme == "https" else False)
            except _TRANSPORT_ERRORS as e:
                last = e
                refused = isinstance(e, aiohttp.ClientConnectorError) and \
                    isinstance(e.os_error, ConnectionRefusedError)
                if i + 1 < len(schemes) and not refused:
                    log.debug("registry %s: https failed (%s), trying http", ep.host, _describe(e))
                    continue
                raise RegistryError(f"registry {ep.host}: {_describe(e)}") from None
            if "://" not in path and not ep.scheme:
                self._schemes.setdefault(ep.host, scheme)
            return resp
        raise RegistryError(f"registry {ep.host}: {_describe(last) if last else 'no usable scheme'}")

    @asynccontextmanager
    async def _request(self, ep: Endpoint, domain: str, method: str, path: str, *, scope: str,
                       auth: Auth | None, headers: dict[str, str] | None = None,
                       data: bytes | Path | None = None) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send with auth; on 401 learn the challenge and retry once; a second 401 is Unauthorized.
        data may be a Path: the file is streamed (and reopened for the retry)."""
        creds = self._creds_for(ep, domain, auth)
        opened: list = []
        denied = ""
        try:
            for attempt in range(2):
                hdrs = dict(headers or {})
                authz = await self._authorization(ep, scope, creds)
                if authz:
                    hdrs["Authorization"] = authz
                elif attempt == 1:  # challenged, and nothing to answer with
                    raise Unauthorized(denied + " (no credentials given)")
                resp = await self._send_once(ep, method, path, hdrs, data, opened)
                if resp.status != 401:
                    try:
                        yield resp
                    finally:
                        resp.release()
                    return
                body = await resp.read()
                resp.release()
                challenges = [c for c in parse_challenges(resp.headers.get("WWW-Authenticate", ""))
                              if c[0] in ("bearer", "basic")]
                new = next((c for c in challenges if c[0] == "bearer"), challenges[0] if challenges else None)
                server = " ".join(x for x in ((new[1].get("error", "") if new else ""), _server_message(body)) if x)
                denied = (f"registry {ep.host}: access denied, the repository does not exist or needs "
                          f"authorization" + (f": server message: {server}" if server else ""))
                if attempt == 1 or new is None or (creds is not None and creds.registry_token):
                    raise Unauthorized(denied)
                self._challenges[ep.host] = (new[0], {k: v for k, v in new[1].items() if k in ("realm", "service")})
                self._forget_token(ep, scope, creds)
        finally:
            for f in opened:
                f.close()

    # ---- manifests

    async def _get_manifest(self, ref: "Reference", reference: str, auth: Auth | None,
                            expected: str | None) -> tuple[str, str, bytes]:
        """GET a manifest by tag or digest from the endpoints in order -> (digest, media type, bytes)."""
        path = f"/v2/{ref.path}/manifests/{reference}"
        scope = f"repository:{ref.path}:pull"
        upstream_error: RegistryError | None = None
        eps = self.endpoints(ref.domain)
        for ep in eps:
            try:
                async with self._request(ep, ref.domain, "GET", path, scope=scope, auth=auth,
                                         headers={"Accept": ACCEPT}) as resp:
                    if resp.status == 404:
                        body = await resp.read()
                        log.debug("registry %s: %s not found (%s)", ep.host, path, _server_message(body))
                        if not ep.mirror:
                            upstream_error = ImageNotFound("not found")
                        continue
                    if resp.status != 200:
                        body = await resp.read()
                        msg = _server_message(body)
                        err = (Unauthorized if resp.status == 403 else RegistryError)(
                            f"registry {ep.host}: unexpected status {resp.status} {resp.reason}"
                            + (f": {msg}" if msg else ""))
                        raise err
                    length = int(resp.headers.get("Content-Length") or 0)
                    if length > MAX_MANIFEST_SIZE:
                        raise RegistryError(f"registry {ep.host}: manifest too large ({length} bytes)")
                    try:
                        body = await resp.content.read(MAX_MANIFEST_SIZE + 1)
                    except _TRANSPORT_ERRORS as e:
                        raise RegistryError(f"registry {ep.host}: {_describe(e)}") from None
                    if len(body) > MAX_MANIFEST_SIZE:
                        raise RegistryError(f"registry {ep.host}: manifest too large")
                    digest = sha256_digest(body)
                    header_digest = resp.headers.get("Docker-Content-Digest", "")
                    if expected and digest != expected:
                        raise RegistryError(f"registry {ep.host}: manifest digest mismatch: "
                                            f"expected {expected}, got {digest}")
                    if not expected and header_digest.startswith("sha256:") and header_digest != digest:
                        raise RegistryError(f"registry {ep.host}: manifest digest mismatch: Docker-Content-Digest "
                                            f"says {header_digest}, content is {digest}")
                    return digest, self._media_type(body, resp.headers.get("Content-Type", ""), ep), body
            except RegistryError as e:
                if ep.mirror:
                    log.info("mirror %s of %s failed, trying the next endpoint: %s", ep.host, ref.domain, e)
                    continue
                upstream_error = e
        if upstream_error is None or isinstance(upstream_error, ImageNotFound):
            raise ImageNotFound(f"{ref.string()}: not found")
        raise upstream_error

    @staticmethod
    def _media_type(body: bytes, content_type: str, ep: Endpoint) -> str:
        try:
            doc = json.loads(body)
        except ValueError:
            raise RegistryError(f"registry {ep.host}: manifest is not JSON") from None
        if not isinstance(doc, dict):
            raise RegistryError(f"registry {ep.host}: manifest is not a JSON object")
        ct = content_type.split(";", 1)[0].strip()
        if doc.get("schemaVersion") == 1 or ct in DOCKER_SCHEMA1:
            raise RegistryError(f"registry {ep.host}: Docker schema 1 manifests are not supported")
        mt = doc.get("mediaType") or ""
        if mt in INDEX_TYPES + MANIFEST_TYPES:
            return mt
        if ct in INDEX_TYPES + MANIFEST_TYPES:
            return ct
        if "manifests" in doc:
            return OCI_INDEX
        if "config" in doc and "layers" in doc:
            return OCI_MANIFEST
        raise RegistryError(f"registry {ep.host}: unsupported manifest media type {mt or ct!r}")

    async def resolve_image(self, ref: "Reference", auth: Auth | None = None,
                            platform: Platform | tuple[str, ...] | None = None) -> "Resolved":
        """Resolve ref to the platform's image manifest, keeping the digest the reference named
        (the index's digest for a multi-platform tag: the repo digest Docker and containerd show)."""
        want = self._platform(platform)
        name = ref.string()
        try:
            reference = ref.digest or ref.tag or "latest"
            digest, mtype, body = await self._get_manifest(ref, reference, auth, ref.digest)
            top = digest
            index = None
            for _ in range(4):  # an index may point at another index; bounded
                if mtype not in INDEX_TYPES:
                    break
                index = body
                doc = json.loads(body)
                desc = select_platform(doc.get("manifests") or [], want)
                if desc is None:
                    have = ", ".join(sorted({str(normalize_platform(**_plat(d))) for d in doc.get("manifests") or []}))
                    raise ImageNotFound(f"no match for platform {want} in manifest {digest}"
                                        + (f" (has {have})" if have else ""))
                digest, mtype, body = await self._get_manifest(ref, desc["digest"], auth, desc["digest"])
                if desc.get("size") is not None and int(desc["size"]) != len(body):
                    raise RegistryError(f"manifest {digest} has size {len(body)}, the index says {desc['size']}")
            if mtype not in MANIFEST_TYPES:
                raise RegistryError(f"unsupported manifest media type {mtype!r}")
        except RegistryError as e:
            raise type(e)(f'failed to resolve reference "{name}": {e}') from None
        return Resolved(digest, mtype, body, top, index)

    async def resolve(self, ref: "Reference", auth: Auth | None = None,
                      platform: Platform | tuple[str, ...] | None = None) -> tuple[str, str, bytes]:
        """(manifest digest, media type, manifest bytes) of ref's image for platform (default: this host)."""
        r = await self.resolve_image(ref, auth, platform)
        return r.digest, r.media_type, r.manifest

    @staticmethod
    def _platform(p: Platform | tuple[str, ...] | None) -> Platform:
        if p is None:
            return host_platform()
        if isinstance(p, Platform):
            return normalize_platform(p.os, p.architecture, p.variant)
        return normalize_platform(*p)

    # ---- blobs

    async def fetch_blob(self, ref: "Reference", digest: str, size: int | None, dest: Path,
                         auth: Auth | None = None,
                         progress: Callable[[int, int | None], None] | None = None) -> None:
        """Download blob `digest` into dest, appending to what dest already holds (Range request;
        a 200 answer restarts from zero). On failure dest keeps what arrived, for the next attempt."""
        path = f"/v2/{ref.path}/blobs/{digest}"
        scope = f"repository:{ref.path}:pull"
        upstream_error: RegistryError | None = None
        for ep in self.endpoints(ref.domain):
            try:
                await self._fetch_from(ep, ref, path, scope, digest, size, dest, auth, progress)
                return
            except RegistryError as e:
                if ep.mirror:
                    log.info("mirror %s of %s failed for blob %s, trying the next endpoint: %s",
                             ep.host, ref.domain, digest, e)
                    continue
                upstream_error = e
        assert upstream_error is not None
        raise upstream_error

    async def _fetch_from(self, ep: Endpoint, ref: "Reference", path: str, scope: str, digest: str,
                          size: int | None, dest: Path, auth: Auth | None,
                          progress: Callable[[int, int | None], None] | None) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        offset = dest.stat().st_size if dest.exists() else 0
        if size is not None and offset > size:
            dest.unlink()
            offset = 0
        if size is not None and offset == size and size > 0:
            return  # complete already: the caller's commit verifies it
        for _ in range(2):
            headers = {"Range": f"bytes={offset}-"} if offset else {}
            async with self._request(ep, ref.domain, "GET", path, scope=scope, auth=auth, headers=headers) as resp:
                if resp.status == 416 and offset:
                    log.info("registry %s: range not satisfiable for %s, restarting", ep.host, digest)
                    dest.unlink(missing_ok=True)
                    offset = 0
                    continue
                if resp.status == 404:
                    raise ImageNotFound(f"registry {ep.host}: blob {digest} of {ref.repository} not found")
                if resp.status not in (200, 206):
                    msg = _server_message(await resp.read())
                    raise (Unauthorized if resp.status == 403 else RegistryError)(
                        f"registry {ep.host}: fetching blob {digest}: unexpected status {resp.status} {resp.reason}"
                        + (f": {msg}" if msg else ""))
                if resp.status == 206:
                    start = _content_range_start(resp.headers.get("Content-Range", ""))
                    if start != offset:
                        raise RegistryError(f"registry {ep.host}: blob {digest}: asked for bytes from {offset}, "
                                            f"got a range starting at {start}")
                    log.info("resuming blob %s at %d bytes from %s", digest, offset, ep.host)
                    mode = "ab"
                else:
                    if offset:
                        log.info("registry %s does not resume downloads; restarting blob %s", ep.host, digest)
                    offset, mode = 0, "wb"
                await self._stream(resp, dest, mode, offset, size, progress, ep, digest)
                return
        raise RegistryError(f"registry {ep.host}: blob {digest}: could not resume")

    @staticmethod
    async def _stream(resp: aiohttp.ClientResponse, dest: Path, mode: str, offset: int, size: int | None,
                      progress: Callable[[int, int | None], None] | None, ep: Endpoint, digest: str) -> None:
        done = offset
        with open(dest, mode) as f:
            try:
                async for chunk in resp.content.iter_chunked(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if size is not None and done > size:
                        raise RegistryError(f"registry {ep.host}: blob {digest} is larger than its "
                                            f"descriptor's {size} bytes")
                    if progress:
                        progress(done, size)
            except _TRANSPORT_ERRORS as e:
                f.flush()
                raise RegistryError(f"registry {ep.host}: fetching blob {digest}: {_describe(e)} "
                                    f"after {done} bytes") from None
        if size is not None and done != size:
            raise RegistryError(f"registry {ep.host}: blob {digest}: got {done} of {size} bytes")

    # ---- push

    async def push_layout(self, layout: Path, ref: "Reference", auth: Auth | None = None) -> str:
        """Push the image of an OCI layout (dir or tar) as ref; returns the pushed manifest's digest.
        The layout's single manifest is pushed (or the one whose ref.name annotation is ref's tag);
        an index is pushed with every manifest it lists."""
        layout = Path(layout)
        if layout.is_dir():
            return await self._push_dir(layout, ref, auth)
        with tempfile.TemporaryDirectory(prefix="kubelab-push-") as d:
            await asyncio.to_thread(_extract_layout, layout, Path(d))
            return await self._push_dir(Path(d), ref, auth)

    async def _push_dir(self, layout: Path, ref: "Reference", auth: Auth | None) -> str:
        try:
            index = json.loads((layout / "index.json").read_text())
        except (OSError, ValueError) as e:
            raise RegistryError(f"{layout} is not an OCI image layout: index.json: {e}") from None
        descs = index.get("manifests") or []
        if not descs:
            raise RegistryError(f"{layout}: index.json lists no manifests")
        if len(descs) > 1:
            names = {ref.tag, ref.string()} - {None}
            named = [d for d in descs if (d.get("annotations") or {}).get("org.opencontainers.image.ref.name") in names]
            if len(named) != 1:
                raise RegistryError(f"{layout}: index.json lists {len(descs)} manifests and none is named "
                                    f"{ref.tag!r}")
            descs = named
        top = descs[0]
        await self._push_manifest_tree(layout, ref, top, auth, tag=ref.tag or top["digest"])
        return top["digest"]

    async def _push_manifest_tree(self, layout: Path, ref: "Reference", desc: dict, auth: Auth | None,
                                  tag: str) -> None:
        body = _layout_blob(layout, desc["digest"]).read_bytes()
        if sha256_digest(body) != desc["digest"]:
            raise RegistryError(f"{layout}: blob {desc['digest']} does not match its digest")
        doc = json.loads(body)
        mtype = desc.get("mediaType") or doc.get("mediaType") or (OCI_INDEX if "manifests" in doc else OCI_MANIFEST)
        if mtype in INDEX_TYPES:
            for child in doc.get("manifests") or []:
                await self._push_manifest_tree(layout, ref, child, auth, tag=child["digest"])
        else:
            blobs = [doc["config"]] + list(doc.get("layers") or [])
            sem = asyncio.Semaphore(3)

            async def one(b: dict) -> None:
                async with sem:
                    await self.push_blob(ref, b["digest"], _layout_blob(layout, b["digest"]), auth)
            await asyncio.gather(*(one(b) for b in blobs))
        await self.push_manifest(ref, tag, body, mtype, auth)

    async def push_blob(self, ref: "Reference", digest: str, src: Path, auth: Auth | None = None) -> bool:
        """Upload a blob unless the registry has it (HEAD). True if uploaded."""
        ep = self.endpoints(ref.domain)[-1]
        scope = f"repository:{ref.path}:pull,push"
        async with self._request(ep, ref.domain, "HEAD", f"/v2/{ref.path}/blobs/{digest}", scope=scope,
                                 auth=auth) as resp:
            if resp.status == 200:
                return False
        async with self._request(ep, ref.domain, "POST", f"/v2/{ref.path}/blobs/uploads/", scope=scope,
                                 auth=auth, headers={"Content-Length": "0"}) as resp:
            if resp.status != 202:
                raise self._push_error(ep, "starting upload", resp.status, resp.reason, await resp.read())
            location = resp.headers.get("Location", "")
            base = str(resp.url)
        if not location:
            raise RegistryError(f"registry {ep.host}: upload started without a Location")
        url = urllib.parse.urljoin(base, location)
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode({"digest": digest})
        size = src.stat().st_size
        async with self._request(ep, ref.domain, "PUT", url, scope=scope, auth=auth,
                                 headers={"Content-Type": "application/octet-stream",
                                          "Content-Length": str(size)},
                                 data=src) as resp:
            if resp.status != 201:
                raise self._push_error(ep, f"uploading blob {digest}", resp.status, resp.reason, await resp.read())
        return True

    async def push_manifest(self, ref: "Reference", tag: str, body: bytes, media_type: str,
                            auth: Auth | None = None) -> str:
        ep = self.endpoints(ref.domain)[-1]
        scope = f"repository:{ref.path}:pull,push"
        async with self._request(ep, ref.domain, "PUT", f"/v2/{ref.path}/manifests/{tag}", scope=scope,
                                 auth=auth, headers={"Content-Type": media_type}, data=body) as resp:
            if resp.status not in (200, 201):
                raise self._push_error(ep, f"pushing manifest {tag}", resp.status, resp.reason, await resp.read())
        return sha256_digest(body)

    @staticmethod
    def _push_error(ep: Endpoint, what: str, status: int, reason: str | None, body: bytes) -> RegistryError:
        msg = _server_message(body)
        cls = Unauthorized if status in (401, 403) else RegistryError
        return cls(f"registry {ep.host}: {what}: {status} {reason}" + (f": {msg}" if msg else ""))


@dataclass
class Resolved:
    digest: str              # the platform's image manifest
    media_type: str
    manifest: bytes
    top_digest: str          # what the reference resolved to (an index's digest for multi-platform tags)
    index: bytes | None      # the index bytes when top_digest names an index


def _plat(desc: dict) -> dict:
    p = desc.get("platform") or {}
    return {"os_": p.get("os", ""), "arch": p.get("architecture", ""), "variant": p.get("variant", "")}


def _content_range_start(value: str) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(m.group(1)) if m else None


def _layout_blob(layout: Path, digest: str) -> Path:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", hexpart):
        raise RegistryError(f"{layout}: unsupported digest {digest!r}")
    p = layout / "blobs" / algo / hexpart
    if not p.is_file():
        raise RegistryError(f"{layout}: blob {digest} is missing")
    return p


def _extract_layout(archive: Path, dest: Path) -> None:
    try:
        with tarfile.open(archive) as tf:
            tf.extractall(dest, filter="data")
    except (OSError, tarfile.TarError) as e:
        raise RegistryError(f"{archive}: cannot read the layout archive: {e}") from None
