"""Service account tokens: the JWTs the apiserver signs, the serviceaccounts/token subresource
(TokenRequest), the authentication of such bearer tokens, and OIDC discovery.

Follows upstream:
- keys (k8s.io/client-go/util/keyutil, pkg/serviceaccount/jwt.go): RSA keys sign RS256, ECDSA keys
  ES256/ES384/ES512 by curve; the key id is the unpadded base64url SHA-256 of the public key's
  DER SubjectPublicKeyInfo; --service-account-key-file files may hold public keys, private keys
  or certificates;
- claims (pkg/serviceaccount/claims.go): iss, sub system:serviceaccount:<ns>:<name>, aud, exp,
  iat, nbf, jti and kubernetes.io {namespace, serviceaccount, pod | secret | node, warnafter};
  the claims are serialised as a Go map is (keys sorted);
- validation (claims.go Validate, go-jose's 1 minute leeway): "service account token has
  expired", "... is not valid yet", the service account, the bound pod or secret must still exist
  with the same uid, a pod or secret deleted over a minute ago invalidates its tokens; a token
  whose issuer is not ours is left to other authenticators;
- TokenRequest (pkg/registry/core/serviceaccount/storage/token.go): expirationSeconds 3600 by
  default, at least 10 minutes, at most 2^32 s, capped by --service-account-max-token-expiration
  with a warning; a pod-bound token of 3607 s for the API's audiences lives a year and warns
  after 3607 s (--service-account-extend-token-expiration);
- OIDC discovery (pkg/serviceaccount/openidmetadata.go): /.well-known/openid-configuration and
  /openid/v1/jwks.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from aiohttp import web
from prometheus_client import Counter
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from ..api import timefmt
from ..api import validation as v
from ..storage.errors import NotFound
from . import codec, status

log = logging.getLogger(__name__)

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
JWKS_PATH = "/openid/v1/jwks"
OPENID_CONFIG_PATH = "/.well-known/openid-configuration"
LEEWAY = 60                                 # go-jose's DefaultLeeway
MIN_EXPIRATION = 10 * 60                    # authentication.MinTokenAgeSec
MAX_EXPIRATION = 1 << 32
DEFAULT_EXPIRATION = 60 * 60
WARN_ONLY_BOUND_EXPIRATION = 60 * 60 + 7    # the projected volume's 3607 s
EXTENDED_EXPIRATION = 24 * 365 * 60 * 60    # what such a token really lives
SA_PREFIX = "system:serviceaccount:"
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"

VALID_TOKENS = Counter("serviceaccount_valid_tokens_total", "Cumulative valid projected service account tokens used")
STALE_TOKENS = Counter("serviceaccount_stale_tokens_total",
                       "Cumulative stale projected service account tokens used (past their warnafter)")

_CURVES = {"secp256r1": ("ES256", hashes.SHA256(), 32, "P-256"),
           "secp384r1": ("ES384", hashes.SHA384(), 48, "P-384"),
           "secp521r1": ("ES512", hashes.SHA512(), 66, "P-521")}


class KeyFileError(ValueError):
    """A key file that cannot be used; str() is the message for the operator."""


class TokenError(Exception):
    """A token of ours that does not authenticate; str() is upstream's reason (logged, never sent)."""


# --- keys -----------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def key_id(public_key: Any) -> str:
    """Upstream's keyIDFromPublicKey: base64url(SHA-256(DER SubjectPublicKeyInfo)), unpadded."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return _b64(hashlib.sha256(der).digest())


def algorithm(key: Any) -> str:
    """The JWS algorithm a key signs with: RS256, or ES256/ES384/ES512 by the curve."""
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return "RS256"
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and key.curve.name in _CURVES:
        return _CURVES[key.curve.name][0]
    raise KeyFileError(f"unsupported key type {type(key).__name__}")


def _pem_blocks(data: bytes) -> list[bytes]:
    out, cur = [], []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN "):
            cur = [line]
        elif cur:
            cur.append(line)
            if line.startswith(b"-----END "):
                out.append(b"".join(cur))
                cur = []
    return out


def load_public_keys(path: str) -> list[Any]:
    """Every RSA or ECDSA public key in a PEM file of public keys, private keys or certificates."""
    try:
        data = open(path, "rb").read()
    except OSError as e:
        raise KeyFileError(f"failed to read key file {path!r}: {e.strerror}") from None
    keys = []
    for block in _pem_blocks(data):
        key = None
        try:
            if b"CERTIFICATE" in block.split(b"\n", 1)[0]:
                key = x509.load_pem_x509_certificate(block).public_key()
            elif b"PRIVATE KEY" in block.split(b"\n", 1)[0]:
                key = serialization.load_pem_private_key(block, None).public_key()
            elif b"PUBLIC KEY" in block.split(b"\n", 1)[0]:
                key = serialization.load_pem_public_key(block)
        except (ValueError, TypeError):
            continue
        if isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
            keys.append(key)
    if not keys:
        raise KeyFileError(f"failed to parse key file {path!r}: data does not contain any valid RSA or ECDSA "
                           f"public keys")
    return keys


def load_signing_key(path: str) -> Any:
    """The RSA or ECDSA private key of --service-account-signing-key-file."""
    try:
        data = open(path, "rb").read()
    except OSError as e:
        raise KeyFileError(f"failed to read service-account-signing-key-file {path!r}: {e.strerror}") from None
    for block in _pem_blocks(data):
        if b"PRIVATE KEY" in block.split(b"\n", 1)[0]:
            try:
                key = serialization.load_pem_private_key(block, None)
            except (ValueError, TypeError):
                continue
            if isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
                algorithm(key)
                return key
    raise KeyFileError(f"failed to parse service-account-issuer-key-file {path!r}: data does not contain a valid "
                       f"RSA or ECDSA private key")


# --- JWS compact serialisation ------------------------------------------------------------------


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def encode(claims: dict, private_key: Any) -> str:
    """A compact JWS of the claims, header {"alg", "kid"} as go-jose writes it."""
    alg = algorithm(private_key)
    header = json.dumps({"alg": alg, "kid": key_id(private_key.public_key())}, separators=(",", ":")).encode()
    signing_input = f"{_b64(header)}.{_b64(_json(claims))}".encode()
    if alg == "RS256":
        sig = private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    else:
        _, h, size, _ = _CURVES[private_key.curve.name]
        r, s = decode_dss_signature(private_key.sign(signing_input, ec.ECDSA(h)))
        sig = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    return f"{signing_input.decode()}.{_b64(sig)}"


def decode_unverified(token: str) -> tuple[dict, dict]:
    """(header, claims) of a compact JWS without checking it; TokenError when it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("not a compact JWS")
    try:
        header = json.loads(_unb64(parts[0]))
        claims = json.loads(_unb64(parts[1]))
    except (ValueError, UnicodeDecodeError) as e:
        raise TokenError(f"malformed token: {e}") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenError("malformed token")
    return header, claims


def verify_signature(token: str, public_keys: list[Any]) -> bool:
    """Whether one of the keys signed the token (the header's alg must be the key's)."""
    head, payload, sig_b64 = token.split(".")
    header, _ = decode_unverified(token)
    try:
        sig = _unb64(sig_b64)
    except ValueError:
        return False
    signing_input = f"{head}.{payload}".encode()
    kid = header.get("kid")
    for key in public_keys:
        try:
            alg = algorithm(key)
        except KeyFileError:
            continue
        if header.get("alg") != alg or (kid and kid != key_id(key)):
            continue
        try:
            if alg == "RS256":
                key.verify(sig, signing_input, padding.PKCS1v15(), hashes.SHA256())
            else:
                _, h, size, _ = _CURVES[key.curve.name]
                if len(sig) != 2 * size:
                    continue
                der = encode_dss_signature(int.from_bytes(sig[:size], "big"), int.from_bytes(sig[size:], "big"))
                key.verify(der, signing_input, ec.ECDSA(h))
            return True
        except InvalidSignature:
            continue
    return False


# --- claims --------------------------------------------------------------------------------------


def username(namespace: str, name: str) -> str:
    return f"{SA_PREFIX}{namespace}:{name}"


def group_names(namespace: str) -> list[str]:
    return ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"]


def _ref(obj: dict) -> dict:
    return {"name": obj["metadata"]["name"], "uid": obj["metadata"].get("uid", "")}


def make_claims(issuer: str, sa: dict, audiences: list[str], expiration_seconds: int, *, now: float | None = None,
                pod: dict | None = None, secret: dict | None = None, node: dict | None = None,
                warn_after: int = 0, jti: str | None = None) -> dict:
    """Upstream's Claims(): the public and the kubernetes.io claims of a token for sa, bound to at
    most one of pod (with its node when given), secret or node."""
    t = int(time.time() if now is None else now)
    k8s: dict[str, Any] = {"namespace": sa["metadata"]["namespace"], "serviceaccount": _ref(sa)}
    if warn_after:
        k8s["warnafter"] = t + warn_after
    if pod is not None:
        k8s["pod"] = _ref(pod)
        if node is not None:
            k8s["node"] = {k: x for k, x in _ref(node).items() if x}
    elif secret is not None:
        k8s["secret"] = _ref(secret)
    elif node is not None:
        k8s["node"] = _ref(node)
    return {"iss": issuer, "sub": username(sa["metadata"]["namespace"], sa["metadata"]["name"]),
            "aud": list(audiences), "exp": t + int(expiration_seconds), "iat": t, "nbf": t,
            "jti": jti or str(uuid.uuid4()), "kubernetes.io": k8s}


def check_times(claims: dict, now: float | None = None) -> None:
    """go-jose's Claims.Validate with the default leeway, in upstream's words."""
    t = time.time() if now is None else now
    nbf, exp, iat = claims.get("nbf"), claims.get("exp"), claims.get("iat")
    for val in (nbf, exp, iat):
        if val is not None and not isinstance(val, (int, float)):
            raise TokenError("service account token claims could not be validated due to unexpected validation "
                             "error")
    if nbf is not None and t + LEEWAY < nbf:
        raise TokenError("service account token is not valid yet")
    if exp is not None and t - LEEWAY > exp:
        raise TokenError("service account token has expired")
    if iat is not None and t + LEEWAY < iat:
        raise TokenError("service account token is issued in the future")


def audiences_intersect(token_auds: Any, target: list[str]) -> list[str]:
    """The token's audiences (the target's when it names none) that are among the target's."""
    if token_auds is None or token_auds == []:
        return list(target)
    if isinstance(token_auds, str):
        token_auds = [token_auds]
    if not isinstance(token_auds, list):
        return []
    return [a for a in token_auds if isinstance(a, str) and a in target]


# --- the issuer -------------------------------------------------------------------------------------


@dataclass
class ServiceAccountTokens:
    """What --service-account-* and --api-audiences configure: the issuers (the first signs), the
    keys that verify, the key that signs (None: TokenRequest is not served), the API's audiences."""
    issuers: list[str] = field(default_factory=lambda: [DEFAULT_ISSUER])
    public_keys: list[Any] = field(default_factory=list)
    signing_key: Any = None
    api_audiences: list[str] = field(default_factory=list)
    max_expiration: int = 0
    extend_expiration: bool = True
    jwks_uri: str = ""

    def __post_init__(self) -> None:
        if not self.api_audiences:
            self.api_audiences = list(self.issuers)

    @property
    def issuer(self) -> str:
        return self.issuers[0]

    def sign(self, claims: dict) -> str:
        return encode(claims, self.signing_key)

    def verify(self, token: str, now: float | None = None, audiences: list[str] | None = None) -> dict | None:
        """The claims of a token of ours whose signature, times and audience (one of `audiences`,
        default the API's) hold; None when the token is not a JWT of one of our issuers (another
        authenticator's); TokenError otherwise."""
        try:
            _, claims = decode_unverified(token)
        except TokenError:
            return None
        if claims.get("iss") not in self.issuers:
            return None
        if not verify_signature(token, self.public_keys):
            raise TokenError("go-jose/go-jose: error in cryptographic primitive")
        target = audiences or self.api_audiences
        if target and not audiences_intersect(claims.get("aud"), target):
            raise TokenError(f"token audiences {json.dumps(claims.get('aud'))} is invalid for the target audiences "
                             f"{json.dumps(target)}")
        check_times(claims, now)
        k8s = claims.get("kubernetes.io")
        if not isinstance(k8s, dict) or not isinstance(k8s.get("serviceaccount"), dict) \
                or not k8s.get("namespace") or not k8s["serviceaccount"].get("name"):
            raise TokenError("service account token claims could not be validated: missing kubernetes.io claims")
        return claims

    def openid_configuration(self) -> dict:
        return {"issuer": self.issuer, "jwks_uri": self.jwks_uri, "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": sorted({algorithm(k) for k in self.public_keys})}

    def jwks(self) -> dict:
        keys = []
        for k in self.public_keys:
            alg = algorithm(k)
            if alg == "RS256":
                n = k.public_numbers()
                keys.append({"use": "sig", "kty": "RSA", "kid": key_id(k), "alg": alg,
                             "n": _b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
                             "e": _b64(n.e.to_bytes((n.e.bit_length() + 7) // 8, "big"))})
            else:
                _, _, size, crv = _CURVES[k.curve.name]
                n = k.public_numbers()
                keys.append({"use": "sig", "kty": "EC", "kid": key_id(k), "crv": crv, "alg": alg,
                             "x": _b64(n.x.to_bytes(size, "big")), "y": _b64(n.y.to_bytes(size, "big"))})
        return {"keys": keys}

    def discovery_served(self) -> bool:
        """Upstream serves OIDC discovery only for an https issuer URL."""
        u = urlparse(self.issuer)
        return u.scheme == "https" and bool(u.netloc) and bool(self.public_keys)


# --- what reads the API -----------------------------------------------------------------------------


class ServiceAccountTokenREST:
    """The serviceaccounts/token subresource and the bearer-token authenticator, over the store
    (TokenRequest reads live) and the watch cache (authentication reads it, then the store on a
    miss, as upstream's informer getters with their live fallback)."""

    def __init__(self, tokens: ServiceAccountTokens, store: Any, cacher: Any) -> None:
        self.tokens = tokens
        self.store = store
        self.cacher = cacher

    async def _live(self, resource: str, namespace: str | None, name: str) -> dict | None:
        key = f"/registry/{resource}/{namespace}/{name}" if namespace else f"/registry/{resource}/{name}"
        try:
            return await self.store.get(key)
        except NotFound:
            return None

    async def _lookup(self, resource: str, namespace: str | None, name: str, uid: str | None = None) -> dict | None:
        key = f"/registry/{resource}/{namespace}/{name}" if namespace else f"/registry/{resource}/{name}"
        obj = self.cacher.get(f"/registry/{resource}/", key) if self.cacher is not None else None
        if obj is None or (uid and obj["metadata"].get("uid") != uid):
            obj = await self._live(resource, namespace, name)
        return obj

    async def _check_bound(self, resource: str, ns: str | None, ref: dict, deleted_before: float,
                           mismatch: str) -> None:
        """The object a token is bound to exists, is the same one (uid) and was not deleted before
        the leeway; TokenError with upstream's wording otherwise."""
        obj = await self._lookup(resource, ns, ref.get("name", ""), ref.get("uid"))
        if obj is None:
            raise TokenError(f'{resource} "{ref.get("name")}" not found')
        if obj["metadata"].get("uid") != ref.get("uid"):
            raise TokenError(mismatch.format(obj["metadata"].get("uid"), ref.get("uid")))
        if _deleted_before(obj, deleted_before):
            raise TokenError("service account token has been invalidated")

    # --- authentication ---

    async def authenticate(self, token: str, audiences: list[str] | None = None) -> dict | None:
        """The user of a service account token; None when the token is not ours; TokenError when
        it is ours and does not hold (the request is then 401)."""
        claims = self.tokens.verify(token, audiences=audiences)
        if claims is None:
            return None
        k8s = claims["kubernetes.io"]
        ns = k8s["namespace"]
        saref, podref, secref, noderef = (k8s.get("serviceaccount") or {}, k8s.get("pod"), k8s.get("secret"),
                                          k8s.get("node"))
        deleted_before = time.time() - LEEWAY
        sa = await self._lookup("serviceaccounts", ns, saref["name"], saref.get("uid"))
        if sa is None:
            raise TokenError(f'serviceaccounts "{saref["name"]}" not found')
        if _deleted_before(sa, deleted_before):
            raise TokenError("service account token has been invalidated")
        if sa["metadata"].get("uid") != saref.get("uid"):
            raise TokenError(f"service account UID ({sa['metadata'].get('uid')}) does not match claim "
                             f"({saref.get('uid')})")
        extra: dict[str, list[str]] = {}
        if isinstance(secref, dict):
            await self._check_bound("secrets", ns, secref, deleted_before,
                                    "secret UID ({}) does not match service account secret ref claim ({})")
        if isinstance(podref, dict):
            await self._check_bound("pods", ns, podref, deleted_before, "pod UID ({}) does not match claim ({})")
            extra[EXTRA_POD_NAME] = [podref["name"]]
            extra[EXTRA_POD_UID] = [podref["uid"]]
        if isinstance(noderef, dict):
            if podref is None and secref is None:
                await self._check_bound("nodes", None, noderef, deleted_before,
                                        "node UID ({}) does not match claim ({})")
            if noderef.get("name"):
                extra[EXTRA_NODE_NAME] = [noderef["name"]]
                if noderef.get("uid"):
                    extra[EXTRA_NODE_UID] = [noderef["uid"]]
        if claims.get("jti"):
            extra[EXTRA_CREDENTIAL_ID] = [f"JTI={claims['jti']}"]
        warn_after = k8s.get("warnafter")
        if isinstance(warn_after, (int, float)) and time.time() > warn_after:
            STALE_TOKENS.inc()
            log.info("stale service account token used serviceaccount=%s/%s pod=%s warnafter=%s", ns,
                     saref["name"], (podref or {}).get("name", ""), timefmt.rfc3339(warn_after))
        else:
            VALID_TOKENS.inc()
        user: dict[str, Any] = {"username": username(ns, saref["name"]), "uid": saref.get("uid", ""),
                                "groups": group_names(ns) + ["system:authenticated"]}
        if extra:
            user["extra"] = extra
        return user

    # --- TokenRequest ---

    async def create_token(self, request: web.Request, namespace: str, name: str) -> web.Response:
        """POST .../namespaces/<ns>/serviceaccounts/<name>/token."""
        if self.tokens.signing_key is None:
            raise status.route_not_found(request.path)
        body = await codec.read_body(request)
        if not isinstance(body, dict):
            raise status.bad_request("the body of the request must be a TokenRequest object")
        if body.get("kind") not in (None, "", "TokenRequest"):
            raise status.bad_request(f"no kind \"{body.get('kind')}\" is registered for version "
                                     f"\"{body.get('apiVersion', '')}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\"")
        req, warning = await self.token_request(namespace, name, body)
        headers = {"Warning": '299 - "' + warning.replace('"', '\\"') + '"'} if warning else None
        return codec.json_response(req, 201, headers=headers)

    async def token_request(self, namespace: str, name: str, body: dict) -> tuple[dict, str]:
        """The answered TokenRequest for a request body, and the warning to send (or "")."""
        meta, spec = body.get("metadata") or {}, body.get("spec") or {}
        if not isinstance(meta, dict) or not isinstance(spec, dict):
            raise status.bad_request("metadata and spec of a TokenRequest must be objects")
        if meta.get("name") and meta["name"] != name:
            raise status.invalid("authentication.k8s.io", "TokenRequest", name, [
                v.invalid("metadata.name", meta["name"], "must match the service account name if specified")])
        if meta.get("namespace") and meta["namespace"] != namespace:
            raise status.invalid("authentication.k8s.io", "TokenRequest", name, [
                v.invalid("metadata.namespace", meta["namespace"],
                          "must match the service account namespace if specified")])
        sa = await self._live("serviceaccounts", namespace, name)
        if sa is None:
            raise status.not_found("", "serviceaccounts", name)
        auds = spec.get("audiences") or list(self.tokens.api_audiences)
        if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds):
            raise status.bad_request("spec.audiences must be a list of strings")
        exp = spec.get("expirationSeconds")
        if exp is None:
            exp = DEFAULT_EXPIRATION
        if isinstance(exp, bool) or not isinstance(exp, int):
            raise status.bad_request(f"spec.expirationSeconds must be an integer, not {exp!r}")
        errs = []
        if exp < MIN_EXPIRATION:
            errs.append(v.invalid("spec.expirationSeconds", exp, "may not specify a duration less than 10 minutes"))
        if exp > MAX_EXPIRATION:
            errs.append(v.invalid("spec.expirationSeconds", exp, "may not specify a duration larger than 2^32 seconds"))
        if errs:
            raise status.invalid("authentication.k8s.io", "TokenRequest", "", errs)
        pod = secret = node = None
        ref = spec.get("boundObjectRef")
        if ref:
            if not isinstance(ref, dict):
                raise status.bad_request("spec.boundObjectRef must be an object")
            api_version, kind, ref_name = ref.get("apiVersion") or "", ref.get("kind") or "", ref.get("name") or ""
            group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
            if group == "" and kind == "Pod":
                pod = await self._live("pods", namespace, ref_name)
                if pod is None:
                    raise status.not_found("", "pods", ref_name)
                if name != (pod.get("spec") or {}).get("serviceAccountName"):
                    raise status.bad_request(f'cannot bind token for serviceaccount "{name}" to pod running with '
                                             f'different serviceaccount name.')
                bound = pod
                node_name = (pod.get("spec") or {}).get("nodeName")
                if node_name:
                    node = await self._lookup("nodes", None, node_name) or {"metadata": {"name": node_name}}
            elif group == "" and kind == "Node":
                node = await self._live("nodes", None, ref_name)
                if node is None:
                    raise status.not_found("", "nodes", ref_name)
                bound = node
            elif group == "" and kind == "Secret":
                secret = await self._live("secrets", namespace, ref_name)
                if secret is None:
                    raise status.not_found("", "secrets", ref_name)
                bound = secret
            else:
                version = api_version.rsplit("/", 1)[-1]
                gvk = f"{group}/{version}, Kind={kind}" if group else f"/{version}, Kind={kind}"
                raise status.bad_request(f"cannot bind token to object of type {gvk}")
            if ref.get("uid") and ref["uid"] != bound["metadata"].get("uid"):
                raise status.conflict("", kind, ref_name, f"the UID in the bound object reference ({ref['uid']}) does "
                                      f"not match the UID in record. The object might have been deleted and then "
                                      f"recreated")
        warning = ""
        if self.tokens.max_expiration and exp > self.tokens.max_expiration:
            warning = f"requested expiration of {exp} seconds shortened to {self.tokens.max_expiration} seconds"
            exp = self.tokens.max_expiration
        warn_after, real_exp = 0, exp
        if self.tokens.extend_expiration and pod is not None and exp == WARN_ONLY_BOUND_EXPIRATION and \
                all(a in self.tokens.api_audiences for a in auds):
            warn_after, real_exp = exp, EXTENDED_EXPIRATION
        now = time.time()
        claims = make_claims(self.tokens.issuer, sa, auds, real_exp, now=now, pod=pod, secret=secret, node=node,
                             warn_after=warn_after)
        token = await asyncio.get_running_loop().run_in_executor(None, self.tokens.sign, claims)
        out_spec = {"audiences": auds, "expirationSeconds": exp}
        if ref:
            out_spec["boundObjectRef"] = ref
        out = {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"name": name, "namespace": namespace, "creationTimestamp": timefmt.rfc3339(now)},
               "spec": out_spec,
               "status": {"token": token, "expirationTimestamp": timefmt.rfc3339(int(now) + exp)}}
        log.info("token issued serviceaccount=%s/%s jti=%s", namespace, name, claims["jti"])
        return out, warning

    # --- TokenReview ---

    async def token_review(self, request: web.Request, static: dict[str, dict]) -> web.Response:
        """POST /apis/authentication.k8s.io/v1/tokenreviews: whether a token authenticates (static
        tokens, then service account tokens) for spec.audiences (default the API's), and as whom."""
        body = await codec.read_body(request)
        spec = (body.get("spec") if isinstance(body, dict) else None) or {}
        token = spec.get("token") if isinstance(spec, dict) else None
        if not token or not isinstance(token, str):
            raise status.bad_request("token is required for TokenReview in authentication")
        wanted = spec.get("audiences") or []
        if not isinstance(wanted, list) or not all(isinstance(a, str) for a in wanted):
            raise status.bad_request("spec.audiences must be a list of strings")
        st: dict[str, Any] = {"user": {}}
        user = static.get(token)
        auds = list(self.tokens.api_audiences)
        try:
            if user is None:
                user = await self.authenticate(token, wanted or None)
                if user is not None:
                    auds = audiences_intersect(decode_unverified(token)[1].get("aud"),
                                               wanted or self.tokens.api_audiences)
            elif wanted:
                auds = [a for a in wanted if a in auds]
                if not auds:
                    user = None
                    st["error"] = "token audiences are not among the requested audiences"
        except TokenError as e:
            st["error"] = str(e)
            user = None
        if user is not None:
            st["authenticated"] = True
            st["user"] = {k: val for k, val in user.items() if val}
            st["audiences"] = auds
        out = {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": None}, "spec": {"token": token, **({"audiences": wanted}
                                                                                  if wanted else {})},
               "status": st}
        return codec.json_response(out, 201)

    # --- OIDC discovery ---

    def discovery(self, path: str) -> web.Response:
        if not self.tokens.discovery_served():
            raise status.route_not_found(path)
        headers = {"Cache-Control": "public, max-age=3600"}
        if path == OPENID_CONFIG_PATH:
            return web.Response(body=codec.dumps(self.tokens.openid_configuration()), content_type="application/json",
                                headers=headers)
        return web.Response(body=codec.dumps(self.tokens.jwks()), content_type="application/jwk-set+json",
                            headers=headers)


def _deleted_before(obj: dict, t: float) -> bool:
    ts = timefmt.parse_time(obj["metadata"].get("deletionTimestamp"))
    return ts is not None and ts < t
