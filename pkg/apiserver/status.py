"""metav1.Status errors as upstream words them."""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web


class StatusError(Exception):
    """An API error that becomes a Status response."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 headers: dict | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> dict:
        s: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                             "message": self.message, "reason": self.reason, "code": self.code}
        if self.details:
            s["details"] = self.details
        return s

    def response(self) -> web.Response:
        return web.Response(status=self.code, body=json.dumps(self.status()).encode(),
                            content_type="application/json", headers=self.headers)


def _details(name: str | None, group: str, plural: str, **extra) -> dict:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    if plural:
        d["kind"] = plural
    d.update(extra)
    return d


def _qualified(group: str, plural: str) -> str:
    return f"{plural}.{group}" if group else plural


def not_found(group: str, plural: str, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{_qualified(group, plural)} "{name}" not found',
                       _details(name, group, plural))


def already_exists(group: str, plural: str, name: str) -> StatusError:
    return StatusError(409, "AlreadyExists", f'{_qualified(group, plural)} "{name}" already exists',
                       _details(name, group, plural))


def conflict(group: str, plural: str, name: str, why: str | None = None) -> StatusError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return StatusError(409, "Conflict",
                       f'Operation cannot be fulfilled on {_qualified(group, plural)} "{name}": {why}',
                       _details(name, group, plural))


def invalid(group: str, kind: str, name: str, errors: list) -> StatusError:
    """422 Invalid with one cause per field error (errors are validation.FieldError)."""
    qualified_kind = f"{kind}.{group}" if group else kind
    msgs = [e.message() for e in errors]
    if len(msgs) == 1:
        agg = msgs[0]
    else:
        agg = "[" + ", ".join(msgs) + "]"
    causes = [e.to_cause() for e in errors]
    return StatusError(422, "Invalid", f'{qualified_kind} "{name}" is invalid: {agg}',
                       _details(name, group, kind, causes=causes))


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


def forbidden(group: str, plural: str, name: str, why: str) -> StatusError:
    target = f'{_qualified(group, plural)} "{name}"' if name else _qualified(group, plural)
    return StatusError(403, "Forbidden", f"{target} is forbidden: {why}", _details(name, group, plural))


def method_not_allowed(message: str = "the server does not allow this method on the requested resource"
                       ) -> StatusError:
    return StatusError(405, "MethodNotAllowed", message)


def unsupported_media(content_type: str) -> StatusError:
    return StatusError(415, "UnsupportedMediaType", 'the body of the request was in an unknown format - '
                       'accepted media types include: application/json, application/yaml, '
                       'application/vnd.kubernetes.protobuf')


def not_acceptable(accept: str) -> StatusError:
    return StatusError(406, "NotAcceptable", "only the following media types are accepted: application/json, "
                       "application/yaml")


def too_large(message: str = "the request is too large") -> StatusError:
    return StatusError(413, "RequestEntityTooLarge", message)


def expired(message: str) -> StatusError:
    return StatusError(410, "Expired", message)


def gone(message: str) -> StatusError:
    return StatusError(410, "Gone", message)


def timeout(message: str) -> StatusError:
    return StatusError(504, "Timeout", message, {"retryAfterSeconds": 1})


def unauthorized() -> StatusError:
    return StatusError(401, "Unauthorized", "Unauthorized")


def internal(message: str) -> StatusError:
    return StatusError(500, "InternalError", f"Internal error occurred: {message}")


def unavailable(message: str) -> StatusError:
    return StatusError(503, "ServiceUnavailable", message)


def route_not_found(path: str) -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource",
                       {"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]})


def success_status(details: dict | None = None) -> dict:
    s: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
    if details:
        s["details"] = details
    return s


def from_patch_error(e) -> StatusError:
    """A PatchError as a Status; what upstream answers with a bare 500 is the client's bad patch: 400."""
    st = e.to_status()
    code = st["code"]
    reason = st.get("reason") or ""
    if code >= 500:
        code, reason = 400, "BadRequest"
    return StatusError(code, reason, st.get("message", ""), st.get("details"))
