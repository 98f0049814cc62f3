"""httpGet probes, as upstream's pkg/probe/http (request.go and http.go).

The request: ``GET <scheme>://<host>:<port><path>`` where scheme is HTTP or HTTPS (lower-cased,
HTTP when empty), host defaults to the pod IP, port is a number or a named container port, the
probe's ``httpHeaders`` are sent (names canonicalised, repeated names kept), ``User-Agent:
kube-probe/<major>.<minor>`` and ``Accept: */*`` unless given (an empty Accept removes it), a
``Host`` header sets the virtual host, no compression and ``Connection: close``. HTTPS does not
verify the certificate. The whole exchange is bounded by timeoutSeconds.

The answer: 2xx is success (its body, at most 10 KiB, is the output); 3xx is followed while the
redirect stays on the same host (at most 10 requests); a redirect to another host is not followed
and its 3xx answer is a *warning* ("Probe terminated redirects, Response body: ..."), which counts
as success; any other status is a failure "HTTP probe failed with statuscode: <code>" (without the
body, as upstream); transport errors are failures quoting Go's error text ("Get \"http://...\":
dial tcp 10.0.0.5:80: connect: connection refused").
"""
from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from .ports import dial_error, join_host_port, resolve_container_port
from .results import Outcome, ProbeError, ProbeRun

# The Kubernetes version kubelab follows (the apiserver's /version reports the same)
KUBE_MAJOR, KUBE_MINOR = "1", "36"

MAX_BODY = 10 * 1024
MAX_REQUESTS = 10
_REDIRECT_CODES = (301, 302, 303, 307, 308)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def user_agent(purpose: str = "probe") -> str:
    """``kube-<purpose>/<major>.<minor>``, upstream's probe User-Agent."""
    return f"kube-{purpose}/{KUBE_MAJOR}.{KUBE_MINOR}"


def canonical_header_key(name: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: "x-custom-header" -> "X-Custom-Header"; names that are
    not valid tokens are left as they are."""
    if not _TOKEN.match(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


@dataclass
class HTTPRequest:
    """The probe request as upstream's NewRequestForHTTPGetAction builds it."""

    url: URL
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)


def build_request(http_get: dict, container: dict, pod_ip: str, purpose: str = "probe") -> HTTPRequest:
    """The request of a probe's ``httpGet``; ProbeError when the port does not resolve."""
    scheme = str(http_get.get("scheme") or "HTTP").lower()
    host = http_get.get("host") or pod_ip
    port = resolve_container_port(http_get.get("port"), container)
    path = str(http_get.get("path") or "")
    if not path.startswith("/"):
        path = "/" + path
    try:
        url = URL(f"{scheme}://{join_host_port(host, port)}{path}")
    except ValueError:
        url = URL.build(scheme=scheme, host=host, port=port, path=path)
    headers: CIMultiDict[str] = CIMultiDict()
    for h in http_get.get("httpHeaders") or []:
        if isinstance(h, dict):
            headers.add(canonical_header_key(str(h.get("name") or "")), str(h.get("value") or ""))
    if "User-Agent" not in headers:
        headers["User-Agent"] = user_agent(purpose)
    if "Accept" not in headers:
        headers["Accept"] = "*/*"
    elif not headers.get("Accept"):
        del headers["Accept"]
    return HTTPRequest(url, headers)


def go_url(url: URL) -> str:
    """url.URL.String() as Go writes it: an explicit port is kept, also the scheme's default one."""
    host = url.raw_host or ""
    if url.explicit_port is not None:
        host = join_host_port(host, url.explicit_port)
    elif ":" in host:
        host = f"[{host}]"
    return f"{url.scheme}://{host}{url.raw_path_qs}"


def _transport_error(url: URL, e: BaseException) -> str:
    """Go's *url.Error text for a failed GET."""
    prefix = f'Get "{go_url(url)}": '
    if isinstance(e, aiohttp.ClientConnectorError) and not isinstance(e, aiohttp.ClientSSLError):
        host = url.host or ""
        return prefix + dial_error(join_host_port(host, url.port or 0), host, e.os_error)
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return prefix + "EOF"
    if isinstance(e, aiohttp.ClientResponseError):
        return prefix + (e.message or str(e))
    return prefix + (str(e) or type(e).__name__)


async def _read_at_most(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    data = bytearray()
    while len(data) < limit:
        chunk = await resp.content.read(limit - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def probe_http(req: HTTPRequest, timeout: float) -> ProbeRun:
    """Send the probe request and judge the answer (see the module docstring)."""
    url, headers = req.url, CIMultiDict(req.headers)
    headers.setdefault("Connection", "close")
    first_host = url.host
    connector = aiohttp.TCPConnector(ssl=False, force_close=True)
    requests = 0
    deadline = asyncio.get_running_loop().time() + timeout  # http.Client.Timeout: the whole exchange
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False,
                                     skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding")) as session:
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    requests += 1
                    resp = await session.get(url, headers=headers, allow_redirects=False)
                    location = resp.headers.get("Location")
                    if resp.status not in _REDIRECT_CODES or location is None:
                        break
                    try:
                        target = url.join(URL(location))
                    except ValueError:
                        break
                    if target.host != first_host:
                        break  # http.ErrUseLastResponse: judge this 3xx answer
                    if requests >= MAX_REQUESTS:
                        resp.release()  # Go's url.Error names the refused Location as written
                        return ProbeRun(Outcome.FAILURE, f'Get "{location}": stopped after 10 redirects')
                    resp.release()
                    if URL(location).is_absolute():
                        headers.popall("Host", None)  # a custom Host survives relative redirects only
                    if not (url.scheme == "https" and target.scheme == "http"):
                        headers["Referer"] = go_url(url)
                    url = target
        except TimeoutError:
            return ProbeRun(Outcome.FAILURE, f'Get "{go_url(url)}": context deadline exceeded '
                                             "(Client.Timeout exceeded while awaiting headers)")
        except (aiohttp.ClientError, OSError, ValueError) as e:
            return ProbeRun(Outcome.FAILURE, _transport_error(url, e))
        try:
            async with asyncio.timeout_at(deadline):
                body = (await _read_at_most(resp, MAX_BODY)).decode(errors="replace")
        except TimeoutError:
            raise ProbeError("context deadline exceeded (Client.Timeout or context cancellation "
                             "while reading body)") from None
        except (aiohttp.ClientError, OSError) as e:
            raise ProbeError(str(e) or type(e).__name__) from None
        finally:
            resp.close()
    if 200 <= resp.status < 400:
        if resp.status >= 300:
            return ProbeRun(Outcome.WARNING, f"Probe terminated redirects, Response body: {body}")
        return ProbeRun(Outcome.SUCCESS, body)
    return ProbeRun(Outcome.FAILURE, f"HTTP probe failed with statuscode: {resp.status}")
