"""Service account tokens of projected volumes, as upstream's kubelet token manager
(pkg/kubelet/token): a TokenRequest (POST .../serviceaccounts/<sa>/token) bound to the pod, cached
per pod, volume and path, and refreshed once 80% of its lifetime has passed or it is 24 h old
(minus up to 10 s of jitter)."""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from kubelab.api.timefmt import parse_time
from kubelab.client.rest import ApiError, Client

Obj = dict[str, Any]

MAX_TTL = 24 * 3600
MAX_JITTER = 10.0
DEFAULT_EXPIRATION = 3600


@dataclass
class Token:
    token: str
    expiration: float            # unix time
    ttl: int                     # the granted spec.expirationSeconds


class TokenError(Exception):
    """The token could not be fetched (upstream's message: `failed to fetch token: ...`)."""


def requires_refresh(tok: Token, now: float, jitter: float = 0.0) -> bool:
    """requiresRefresh: past 24 h since issue, or within 20% of the TTL of expiry (minus jitter)."""
    iat = tok.expiration - tok.ttl
    if now > iat + MAX_TTL - jitter:
        return True
    return now > tok.expiration - (tok.ttl * 20) // 100 - jitter


def token_request_body(pod: Obj, audience: str | None, expiration_seconds: int | None) -> Obj:
    meta = pod["metadata"]
    spec: Obj = {"expirationSeconds": int(expiration_seconds or DEFAULT_EXPIRATION),
                 "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}}
    if audience:
        spec["audiences"] = [audience]
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


class TokenManager:
    """Cached tokens: get() returns a fresh enough one, asking the API server when needed."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.cache: dict[tuple[str, ...], Token] = {}

    async def get(self, key: tuple[str, ...], pod: Obj, audience: str | None,
                  expiration_seconds: int | None) -> tuple[Token, bool]:
        """(token, fetched): fetched is True when a new token was requested."""
        cur = self.cache.get(key)
        if cur is not None and not requires_refresh(cur, time.time(), random.random() * MAX_JITTER):
            return cur, False
        ns = pod["metadata"].get("namespace") or "default"
        sa = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        body = token_request_body(pod, audience, expiration_seconds)
        try:
            tr = await self.client.create("v1", "serviceaccounts", body, ns, subresource="token", name=sa)
        except ApiError as e:
            if cur is not None and time.time() < cur.expiration:
                return cur, False        # keep serving the valid one, as upstream
            raise TokenError(f"failed to fetch token: {e.message}") from None
        status = (tr or {}).get("status") or {}
        exp = parse_time(status.get("expirationTimestamp"))
        if not status.get("token") or exp is None:
            raise TokenError("failed to fetch token: the TokenRequest answer has no token")
        ttl = int(((tr.get("spec") or {}).get("expirationSeconds")) or body["spec"]["expirationSeconds"])
        tok = Token(status["token"], exp, ttl)
        self.cache[key] = tok
        return tok, True

    def forget(self, pod_uid: str) -> None:
        for k in [k for k in self.cache if k[0] == pod_uid]:
            del self.cache[k]
