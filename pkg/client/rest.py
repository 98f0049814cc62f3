"""Async REST client for the Kubernetes API (JSON only).

    async with Client.from_kubeconfig(component="scheduler") as c:
        pod = await c.get("v1", "pods", "default", "web-0")
        deps = await c.list_all("apps/v1", "deployments", "default", label_selector="app=web")
        await c.patch("apps/v1", "deployments", "default", "web", {"spec": {"replicas": 3}})
        async with c.watch("v1", "pods", "default", resource_version=deps_rv) as w:
            async for event_type, obj in w:
                ...

Resources are addressed by (api_version, resource, namespace, name, subresource) exactly as the
URL is built: "v1" -> /api/v1, "apps/v1" -> /apis/apps/v1, then /namespaces/<ns> when namespaced,
/<resource>[/<name>[/<subresource>]]. namespace=None means cluster-scoped or all namespaces.

Every non-2xx answer raises `ApiError` carrying the Status (code, reason, message, details).
Retries, with exponential backoff and jitter:
  * 429: always (the server did not act on the request), honouring Retry-After;
  * 5xx: for idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS), and for any method when the
    server sent Retry-After (as client-go);
  * connection failures: always when the connection could not be opened, otherwise only for
    idempotent methods. Transport errors (aiohttp.ClientError, asyncio.TimeoutError) propagate
    once retries are exhausted.
`Warning` response headers are logged and kept in `Client.warnings`.
"""
from __future__ import annotations

import asyncio
import collections
import email.utils
import json
import logging
import random
import time
from typing import Any, AsyncIterator, Iterable, Mapping
from urllib.parse import quote

import aiohttp
from yarl import URL

from .kubeconfig import ClientConfig, in_cluster_config, load_kubeconfig
from .workqueue import TokenBucket

log = logging.getLogger(__name__)

Obj = dict[str, Any]

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

# Reason and message for an error answer that carries no Status (apimachinery's
# NewGenericServerResponse).
_GENERIC_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "the server rejected our request for an unknown reason"),
    401: ("Unauthorized", "the server has asked for the client to provide credentials"),
    403: ("Forbidden", ""),   # the server's own message says who may not do what
    404: ("NotFound", "the server could not find the requested resource"),
    405: ("MethodNotAllowed", "the server does not allow this method on the requested resource"),
    406: ("NotAcceptable", "the server was unable to respond with a content type that the client supports"),
    409: ("Conflict", "the server reported a conflict"),
    415: ("UnsupportedMediaType", ""),
    422: ("Invalid", "the server rejected our request due to an error in our request"),
    429: ("TooManyRequests", "the server has received too many requests and has asked us to try again later"),
    503: ("ServiceUnavailable", "the server is currently unable to handle the request"),
    504: ("Timeout", "the server was unable to return a response in the time allotted, "
                     "but may still be processing the request"),
}

KNOWN_REASONS = frozenset({
    "Unauthorized", "Forbidden", "NotFound", "AlreadyExists", "Conflict", "Gone", "Invalid",
    "ServerTimeout", "StoreReadError", "Timeout", "TooManyRequests", "BadRequest",
    "MethodNotAllowed", "NotAcceptable", "RequestEntityTooLarge", "UnsupportedMediaType",
    "InternalError", "Expired", "ServiceUnavailable",
})


class ApiError(Exception):
    """The API server answered with an error Status.

    Attributes: `code` (HTTP status), `reason` (e.g. "NotFound"), `message` (the server's
    message, meant for people), `status` (the whole Status dict), `retry_after` (seconds or None).
    """

    def __init__(self, code: int, reason: str, message: str, status: Obj | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.reason = reason or "Unknown"
        self.message = message
        self.status: Obj = status if status is not None else {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": self.reason, "code": self.code,
        }
        self.retry_after = retry_after

    @property
    def details(self) -> Obj:
        return self.status.get("details") or {}

    @property
    def causes(self) -> list[Obj]:
        return list(self.details.get("causes") or [])

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"ApiError(code={self.code}, reason={self.reason!r}, message={self.message!r})"

    @classmethod
    def from_status(cls, status: Obj, http_code: int | None = None,
                    retry_after: float | None = None) -> "ApiError":
        """Build from a Status object (an error body, or the object of a watch ERROR event)."""
        code = status.get("code") or http_code or 500
        reason = status.get("reason") or _GENERIC_ERRORS.get(int(code), ("Unknown", ""))[0]
        message = status.get("message") or _generic_message(int(code), "")
        if retry_after is None:
            ra = (status.get("details") or {}).get("retryAfterSeconds")
            if isinstance(ra, (int, float)) and ra > 0:
                retry_after = float(ra)
        return cls(int(code), reason, message, status, retry_after)

    @classmethod
    def from_response(cls, code: int, body: bytes, retry_after: float | None = None) -> "ApiError":
        """Build from an HTTP error answer: its Status when the body is one (client-go decodes a
        Status only when its "status" field is set), else a generic error for the code."""
        text = body.decode("utf-8", "replace")
        try:
            doc = json.loads(text) if text.strip() else None
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("kind") == "Status" and doc.get("status"):
            return cls.from_status(doc, code, retry_after)
        reason, _ = _GENERIC_ERRORS.get(code, ("InternalError" if code >= 500 else "Unknown", ""))
        return cls(code, reason, _generic_message(code, text.strip()), None, retry_after)


def _generic_message(code: int, server_message: str) -> str:
    if code in (403, 415):
        return server_message or f"the server responded with the status code {code} but did not " \
                                 "return more information"
    if code in _GENERIC_ERRORS:
        return _GENERIC_ERRORS[code][1]
    if code >= 500:
        return f'an error on the server ("{server_message}") has prevented the request from succeeding'
    return f"the server responded with the status code {code} but did not return more information"


def _has(err: BaseException, reason: str, code: int) -> bool:
    if not isinstance(err, ApiError):
        return False
    return err.reason == reason or (err.reason not in KNOWN_REASONS and err.code == code)


def is_not_found(err: BaseException) -> bool:
    """404 NotFound."""
    return _has(err, "NotFound", 404)


def is_already_exists(err: BaseException) -> bool:
    """409 AlreadyExists (a create of an existing name)."""
    return isinstance(err, ApiError) and err.reason == "AlreadyExists"


def is_conflict(err: BaseException) -> bool:
    """409 Conflict (stale resourceVersion, failed precondition)."""
    return _has(err, "Conflict", 409)


def is_invalid(err: BaseException) -> bool:
    """422 Invalid."""
    return _has(err, "Invalid", 422)


def is_gone(err: BaseException) -> bool:
    """410: Expired (too old resource version) or Gone."""
    return isinstance(err, ApiError) and (err.code == 410 or err.reason in ("Expired", "Gone"))


def is_forbidden(err: BaseException) -> bool:
    """403 Forbidden."""
    return _has(err, "Forbidden", 403)


def is_unauthorized(err: BaseException) -> bool:
    """401 Unauthorized."""
    return _has(err, "Unauthorized", 401)


def is_too_many_requests(err: BaseException) -> bool:
    """429 TooManyRequests."""
    return isinstance(err, ApiError) and (err.reason == "TooManyRequests" or err.code == 429)


def resource_path(api_version: str, resource: str, namespace: str | None = None,
                  name: str | None = None, subresource: str | None = None) -> str:
    """The URL path of a collection, an object or a subresource."""
    if not api_version or not resource:
        raise ValueError("api_version and resource are required")
    prefix = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [prefix]
    if namespace:
        parts.append("namespaces/" + quote(namespace, safe=""))
    parts.append(resource)
    if name is not None:
        if name == "":
            raise ValueError("resource name may not be empty")
        parts.append(quote(name, safe=":@"))
    if subresource:
        if name is None:
            raise ValueError("a subresource needs a resource name")
        parts.append(subresource)
    return "/".join(parts)


def parse_warning_header(value: str) -> list[str]:
    """The warn-text of each warning in an RFC 7234 Warning header (`299 - "text"[, ...]`)."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " ,\t":
            i += 1
        if i >= n:
            break
        # warn-code and warn-agent
        tokens = 0
        while i < n and tokens < 2:
            j = i
            while j < n and value[j] not in " \t":
                j += 1
            tokens += 1
            i = j
            while i < n and value[i] in " \t":
                i += 1
        if i >= n or value[i] != '"':
            # malformed: skip to next comma
            while i < n and value[i] != ",":
                i += 1
            continue
        i += 1
        text = []
        while i < n and value[i] != '"':
            if value[i] == "\\" and i + 1 < n:
                i += 1
            text.append(value[i])
            i += 1
        i += 1
        out.append("".join(text))
        # optional quoted warn-date
        while i < n and value[i] in " \t":
            i += 1
        if i < n and value[i] == '"':
            i = value.find('"', i + 1)
            i = n if i < 0 else i + 1
    return out


def _retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _query(params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if not params:
        return out
    items = params.items() if isinstance(params, Mapping) else params
    for key, value in items:
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool):
                v = "true" if v else "false"
            out.append((key, str(v)))
    return out


def _object_meta(body: Obj) -> Obj:
    meta = body.get("metadata")
    return meta if isinstance(meta, dict) else {}


class Client:
    """One connection pool to one API server. Use as `async with Client(...) as c:` or call
    `await c.close()`.

    Arguments: `component` names the user agent ("kubelab/<component>"); `qps`/`burst` enable a
    client-side token bucket (off when qps is None); `max_retries` bounds the retries described in
    the module docstring; `backoff_base`/`backoff_max` shape the exponential backoff; Retry-After is
    honoured up to `max_retry_after` seconds; `timeout` is the total time for one non-watch attempt.
    `max_inflight` bounds the requests (not watches or streams) in flight at once, and so the pool's
    connections: each TLS connection costs its buffers (about 300 KiB), and a process with a hundred
    concurrent writers (a kubelet with 100 pods) would otherwise keep a hundred of them open.
    """

    def __init__(self, config: ClientConfig, *, component: str = "client", qps: float | None = None,
                 burst: int = 10, max_retries: int = 5, backoff_base: float = 0.1,
                 backoff_max: float = 10.0, max_retry_after: float = 60.0, timeout: float = 60.0,
                 max_inflight: int | None = None) -> None:
        self.config = config
        self.component = component
        self.user_agent = f"kubelab/{component}"
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.max_retry_after = max_retry_after
        self.timeout = timeout
        self.warnings: collections.deque[str] = collections.deque(maxlen=1000)
        self._limiter = TokenBucket(qps, burst) if qps else None
        self._inflight = asyncio.Semaphore(max_inflight) if max_inflight else None
        self._ssl = config.ssl_context()
        self._base = URL(config.server.rstrip("/"))
        self._session: aiohttp.ClientSession | None = None

    # -- construction and lifetime ------------------------------------------------

    @classmethod
    def from_kubeconfig(cls, path: str | list[str] | None = None, context: str | None = None,
                        **kwargs: Any) -> "Client":
        """A client for a kubeconfig (None: $KUBECONFIG or ~/.kube/config) and context."""
        return cls(load_kubeconfig(path, context), **kwargs)

    @classmethod
    def in_cluster(cls, **kwargs: Any) -> "Client":
        """A client for a process running in a pod (service-account credentials)."""
        return cls(in_cluster_config(), **kwargs)

    @property
    def namespace(self) -> str:
        """The default namespace of the kubeconfig context (or service account)."""
        return self.config.namespace

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool (open watches end)."""
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True,
                                             limit=0, limit_per_host=0)
            self._session = aiohttp.ClientSession(connector=connector, skip_auto_headers=("User-Agent",))
        return self._session

    # -- transport -----------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        delay = min(self.backoff_max, self.backoff_base * (2 ** attempt))
        return delay * (0.5 + random.random() * 0.5)

    def _record_warnings(self, headers: Any) -> None:
        for value in headers.getall("Warning", []):
            for text in parse_warning_header(value):
                self.warnings.append(text)
                log.warning("Warning from server: %s", text)

    def _headers(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": self.user_agent}
        auth = self.config.authorization_header()
        if auth:
            h["Authorization"] = auth
        if extra:
            h.update(extra)
        return h

    async def _send(self, method: str, path: str, *, params: list[tuple[str, str]],
                    data: bytes | None, headers: dict[str, str], timeout: aiohttp.ClientTimeout,
                    retry: bool | None, stream: bool) -> tuple[aiohttp.ClientResponse, bytes | None]:
        """Send with retries. Returns the response and its body (None when streaming: the caller
        reads and releases the response)."""
        method = method.upper()
        idempotent = method in IDEMPOTENT_METHODS if retry is None else retry
        url = URL(str(self._base) + path, encoded=True)
        if params:
            url = url.extend_query(params)
        extra: dict[str, Any] = {}
        if self.config.tls_server_name and self._ssl is not None:
            extra["server_hostname"] = self.config.tls_server_name
        attempt = 0
        while True:
            if self._limiter is not None:
                await self._limiter.wait()
            session = self._get_session()
            gate = self._inflight if not stream and self._inflight is not None else None
            try:
                if gate is not None:
                    await gate.acquire()
                try:
                    resp = await session.request(method, url, data=data, headers=self._headers(headers),
                                                 timeout=timeout, allow_redirects=False, **extra)
                    body: bytes | None = None
                    if not stream or resp.status >= 400:
                        try:
                            body = await resp.read()
                        finally:
                            resp.release()
                finally:
                    if gate is not None:
                        gate.release()
            except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError):
                raise  # TLS verification failures do not heal by retrying
            except aiohttp.ClientConnectorError as e:
                # the connection was never opened: safe to retry any method
                if attempt >= self.max_retries:
                    raise
                delay = self._backoff(attempt)
                log.info("%s %s: cannot connect (%s); retrying in %.2fs", method, path, e, delay)
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as e:
                if not idempotent or attempt >= self.max_retries:
                    raise
                delay = self._backoff(attempt)
                log.info("%s %s: %s; retrying in %.2fs", method, path, e.__class__.__name__, delay)
            else:
                self._record_warnings(resp.headers)
                if resp.status < 400:
                    return resp, body
                retry_after = _retry_after_seconds(resp.headers)
                err = ApiError.from_response(resp.status, body or b"", retry_after)
                retriable = resp.status == 429 or (resp.status >= 500 and (
                    idempotent or retry_after is not None))
                if not retriable or attempt >= self.max_retries:
                    raise err
                if err.retry_after is not None:
                    delay = min(err.retry_after, self.max_retry_after)
                else:
                    delay = self._backoff(attempt)
                log.info("%s %s: %d %s; retrying in %.2fs", method, path, err.code, err.reason, delay)
            attempt += 1
            await asyncio.sleep(delay)

    async def request(self, method: str, path: str, *,
                      params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None,
                      body: Any = None, content_type: str | None = None,
                      headers: Mapping[str, str] | None = None, timeout: float | None = None,
                      retry: bool | None = None, raw: bool = False) -> Any:
        """Send one request to `path` (e.g. "/api/v1/namespaces/default/pods/x/log").

        `body` may be a dict/list (sent as JSON), str or bytes. Query values may be bools
        ("true"/"false"), lists (repeated keys) or None (omitted). `retry` overrides whether 5xx
        and broken connections are retried (default: for idempotent methods). Returns the decoded
        JSON document, the text of a non-JSON answer, None for an empty one, or bytes if `raw`.
        """
        h = dict(headers or {})
        data: bytes | None = None
        if body is not None:
            if isinstance(body, bytes):
                data = body
            elif isinstance(body, str):
                data = body.encode()
            else:
                data = json.dumps(body, separators=(",", ":")).encode()
            h.setdefault("Content-Type", content_type or "application/json")
        t = aiohttp.ClientTimeout(total=timeout if timeout is not None else self.timeout)
        resp, payload = await self._send(method, path, params=_query(params), data=data, headers=h,
                                         timeout=t, retry=retry, stream=False)
        payload = payload or b""
        if raw:
            return payload
        if not payload.strip():
            return None
        ctype = resp.headers.get("Content-Type", "")
        if "json" in ctype:
            return json.loads(payload)
        if not ctype and payload.lstrip()[:1] in (b"{", b"["):
            try:
                return json.loads(payload)
            except ValueError:
                pass
        return payload.decode("utf-8", "replace")

    # -- verbs ----------------------------------------------------------------------

    def path(self, api_version: str, resource: str, namespace: str | None = None,
             name: str | None = None, subresource: str | None = None) -> str:
        """Same as `resource_path`."""
        return resource_path(api_version, resource, namespace, name, subresource)

    async def get(self, api_version: str, resource: str, namespace: str | None = None,
                  name: str | None = None, subresource: str | None = None) -> Obj:
        """GET one object (or a subresource of it, e.g. "status", "scale")."""
        if not name:
            raise ValueError("get needs a name")
        return await self.request("GET", resource_path(api_version, resource, namespace, name, subresource))

    async def list(self, api_version: str, resource: str, namespace: str | None = None, *,
                   label_selector: str | None = None, field_selector: str | None = None,
                   limit: int | None = None, continue_: str | None = None,
                   resource_version: str | None = None,
                   resource_version_match: str | None = None) -> Obj:
        """One LIST page: a dict with "items" and "metadata" ({resourceVersion, continue})."""
        params = {
            "labelSelector": label_selector or None,
            "fieldSelector": field_selector or None,
            "limit": limit,
            "continue": continue_ or None,
            "resourceVersion": resource_version,
            "resourceVersionMatch": resource_version_match,
        }
        result = await self.request("GET", resource_path(api_version, resource, namespace), params=params)
        if isinstance(result, dict) and result.get("items") is None:
            result["items"] = []
        return result

    async def list_all(self, api_version: str, resource: str, namespace: str | None = None, *,
                       label_selector: str | None = None, field_selector: str | None = None,
                       limit: int | None = 500, resource_version: str | None = None,
                       resource_version_match: str | None = None) -> Obj:
        """LIST every page (following metadata.continue) into one list dict.

        If a continue token expires (410) the list is redone in one unpaged request, as
        client-go's pager does. The result's metadata.resourceVersion is the list's snapshot RV.
        """
        sel = {"label_selector": label_selector, "field_selector": field_selector}
        first = await self.list(api_version, resource, namespace, limit=limit,
                                resource_version=resource_version,
                                resource_version_match=resource_version_match, **sel)
        items = list(first.get("items") or [])
        last = first
        token = _object_meta(first).get("continue")
        while token:
            try:
                page = await self.list(api_version, resource, namespace, limit=limit, continue_=token, **sel)
            except ApiError as e:
                if e.code != 410:
                    raise
                log.info("list %s: continue token expired, listing without paging", resource)
                return await self.list(api_version, resource, namespace,
                                       resource_version=resource_version,
                                       resource_version_match=resource_version_match, **sel)
            items.extend(page.get("items") or [])
            last = page
            token = _object_meta(page).get("continue")
        result = dict(last)
        meta = dict(_object_meta(last))
        meta.pop("continue", None)
        meta.pop("remainingItemCount", None)
        if not meta.get("resourceVersion"):
            rv = _object_meta(first).get("resourceVersion")
            if rv:
                meta["resourceVersion"] = rv
        result["metadata"] = meta
        result["items"] = items
        return result

    @staticmethod
    def _write_params(field_manager: str | None, dry_run: bool,
                      field_validation: str | None) -> dict[str, Any]:
        return {"fieldManager": field_manager, "dryRun": "All" if dry_run else None,
                "fieldValidation": field_validation}

    async def create(self, api_version: str, resource: str, body: Obj, namespace: str | None = None, *,
                     subresource: str | None = None, name: str | None = None,
                     field_manager: str | None = None, dry_run: bool = False,
                     field_validation: str | None = None) -> Obj:
        """POST `body` to the collection (namespace defaults to body.metadata.namespace).
        With `subresource` (and `name`), POST to that subresource, e.g. pods/<n>/binding."""
        ns = namespace or _object_meta(body).get("namespace")
        path = resource_path(api_version, resource, ns, name, subresource)
        return await self.request("POST", path, body=body,
                                  params=self._write_params(field_manager, dry_run, field_validation))

    async def update(self, api_version: str, resource: str, body: Obj, namespace: str | None = None, *,
                     subresource: str | None = None, field_manager: str | None = None,
                     dry_run: bool = False, field_validation: str | None = None) -> Obj:
        """PUT `body` (name and namespace from its metadata). A set metadata.resourceVersion
        makes the update conditional: a stale one answers 409 Conflict."""
        meta = _object_meta(body)
        name = meta.get("name")
        if not name:
            raise ValueError("update needs body.metadata.name")
        ns = namespace or meta.get("namespace")
        path = resource_path(api_version, resource, ns, name, subresource)
        return await self.request("PUT", path, body=body,
                                  params=self._write_params(field_manager, dry_run, field_validation))

    async def update_status(self, api_version: str, resource: str, body: Obj,
                            namespace: str | None = None, *, field_manager: str | None = None,
                            dry_run: bool = False) -> Obj:
        """PUT `body` to the status subresource."""
        return await self.update(api_version, resource, body, namespace, subresource="status",
                                 field_manager=field_manager, dry_run=dry_run)

    async def patch(self, api_version: str, resource: str, namespace: str | None, name: str,
                    body: Any, patch_type: str = "merge", *, subresource: str | None = None,
                    field_manager: str | None = None, force: bool | None = None,
                    dry_run: bool = False, field_validation: str | None = None) -> Obj:
        """PATCH an object. patch_type: "merge" (RFC 7386), "json" (RFC 6902 list of ops),
        "strategic" (strategic merge patch) or "apply" (server-side apply; needs field_manager,
        `force` takes over conflicting fields)."""
        if patch_type not in PATCH_CONTENT_TYPES:
            raise ValueError(f"unknown patch type {patch_type!r}; expected one of {sorted(PATCH_CONTENT_TYPES)}")
        if patch_type == "apply" and not field_manager:
            raise ValueError("field_manager is required for apply patches")
        if force is not None and patch_type != "apply":
            raise ValueError("force is only allowed for apply patches")
        params = self._write_params(field_manager, dry_run, field_validation)
        params["force"] = force
        path = resource_path(api_version, resource, namespace, name, subresource)
        return await self.request("PATCH", path, body=body, params=params,
                                  content_type=PATCH_CONTENT_TYPES[patch_type])

    @staticmethod
    def _delete_options(propagation_policy: str | None, grace_period_seconds: int | None,
                        preconditions: Mapping[str, str] | None, dry_run: bool) -> Obj | None:
        opts: Obj = {}
        if propagation_policy is not None:
            opts["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = int(grace_period_seconds)
        if preconditions:
            opts["preconditions"] = dict(preconditions)
        if dry_run:
            opts["dryRun"] = ["All"]
        if not opts:
            return None
        return {"kind": "DeleteOptions", "apiVersion": "v1", **opts}

    async def delete(self, api_version: str, resource: str, namespace: str | None, name: str, *,
                     propagation_policy: str | None = None, grace_period_seconds: int | None = None,
                     preconditions: Mapping[str, str] | None = None, dry_run: bool = False) -> Obj:
        """DELETE an object. propagation_policy: "Orphan" | "Background" | "Foreground";
        preconditions: {"uid": ..., "resourceVersion": ...} (a mismatch answers 409).
        Returns what the server returns: the object (graceful deletion) or a Status."""
        if not name:
            raise ValueError("delete needs a name")
        body = self._delete_options(propagation_policy, grace_period_seconds, preconditions, dry_run)
        return await self.request("DELETE", resource_path(api_version, resource, namespace, name), body=body)

    async def delete_collection(self, api_version: str, resource: str, namespace: str | None = None, *,
                                label_selector: str | None = None, field_selector: str | None = None,
                                propagation_policy: str | None = None,
                                grace_period_seconds: int | None = None, dry_run: bool = False) -> Obj:
        """DELETE every object of a collection matching the selectors."""
        body = self._delete_options(propagation_policy, grace_period_seconds, None, dry_run)
        params = {"labelSelector": label_selector or None, "fieldSelector": field_selector or None}
        return await self.request("DELETE", resource_path(api_version, resource, namespace),
                                  params=params, body=body)

    def watch(self, api_version: str, resource: str, namespace: str | None = None, *,
              resource_version: str | None = None, timeout_seconds: int | None = None,
              allow_bookmarks: bool = True, label_selector: str | None = None,
              field_selector: str | None = None, raise_errors: bool = True) -> "Watch":
        """WATCH a collection: an async iterator (and async context manager) of (type, object).

        type is ADDED, MODIFIED, DELETED or BOOKMARK. An ERROR event raises ApiError built from its
        Status (code 410 / reason Expired means: relist) unless `raise_errors` is False, in which
        case ("ERROR", status) is yielded and the stream ends. The iterator ends when the server
        closes the stream (e.g. after timeout_seconds). `Watch.resource_version` follows the last
        event seen (bookmarks included), ready to resume from.
        """
        params = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": "true" if allow_bookmarks else None,
            "labelSelector": label_selector or None,
            "fieldSelector": field_selector or None,
        }
        return Watch(self, resource_path(api_version, resource, namespace), _query(params),
                     timeout_seconds, raise_errors, resource_version)


class Watch:
    """A running watch; see `Client.watch`."""

    def __init__(self, client: Client, path: str, params: list[tuple[str, str]],
                 timeout_seconds: int | None, raise_errors: bool, resource_version: str | None) -> None:
        self._client = client
        self._path = path
        self._params = params
        self._timeout_seconds = timeout_seconds
        self._raise_errors = raise_errors
        self._resp: aiohttp.ClientResponse | None = None
        self._buf = bytearray()
        self._scan = 0
        self._eof = False
        self._closed = False
        self.resource_version = resource_version
        self.events = 0

    async def __aenter__(self) -> "Watch":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[tuple[str, Obj]]:
        return self

    async def close(self) -> None:
        """Stop watching and release the connection."""
        self._closed = True
        if self._resp is not None:
            self._resp.close()
            self._resp = None

    async def _open(self) -> None:
        read = None if self._timeout_seconds is None else self._timeout_seconds + 60
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=read)
        self._resp, _ = await self._client._send("GET", self._path, params=self._params, data=None,
                                                 headers={}, timeout=timeout, retry=True, stream=True)

    async def _readline(self) -> bytes | None:
        assert self._resp is not None
        while True:
            idx = self._buf.find(b"\n", self._scan)
            if idx >= 0:
                line = bytes(self._buf[:idx])
                del self._buf[:idx + 1]
                self._scan = 0
                return line
            if self._eof:
                if self._buf:
                    line = bytes(self._buf)
                    self._buf.clear()
                    return line
                return None
            self._scan = len(self._buf)
            chunk = await self._resp.content.readany()
            if not chunk:
                self._eof = True
            else:
                self._buf += chunk

    async def __anext__(self) -> tuple[str, Obj]:
        if self._closed:
            raise StopAsyncIteration
        try:
            if self._resp is None:
                await self._open()
            while True:
                try:
                    line = await self._readline()
                except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as e:
                    log.debug("watch %s: stream ended: %s", self._path, e)
                    line = None
                if line is None:
                    await self.close()
                    raise StopAsyncIteration
                if not line.strip():
                    continue
                try:
                    event = json.loads(line)
                    etype = event["type"]
                    obj = event.get("object") or {}
                except (ValueError, KeyError, TypeError, AttributeError):
                    log.warning("watch %s: cannot decode event %r; closing", self._path, line[:200])
                    await self.close()
                    raise StopAsyncIteration from None
                if etype == "ERROR":
                    await self.close()
                    if self._raise_errors:
                        raise ApiError.from_status(obj if isinstance(obj, dict) else {})
                    return etype, obj
                rv = _object_meta(obj).get("resourceVersion") if isinstance(obj, dict) else None
                if rv:
                    self.resource_version = rv
                self.events += 1
                return etype, obj
        except BaseException:
            self._closed = True
            if self._resp is not None:
                self._resp.close()
                self._resp = None
            raise
