"""Request bodies and response encodings: JSON and YAML in, JSON out, protobuf refused."""
from __future__ import annotations

import json
from typing import Any

import yaml
from aiohttp import web

from ..api.protobuf import ProtobufError, decode_body
from . import status

MAX_BODY = 3 * 1024 * 1024

TABLE_MARK = "as=Table"


async def read_body(request: web.Request) -> Any:
    """Decode the request body by Content-Type; 413 over 3 MiB, 415 for protobuf, 400 when malformed."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise status.too_large("the request is too large: limit is 3145728 bytes")
    if len(raw) > MAX_BODY:
        raise status.too_large("the request is too large: limit is 3145728 bytes")
    ctype = (request.content_type or "application/json").lower()
    if "protobuf" in ctype or raw[:4] == b"k8s\x00":
        # typed client-go clients (kubectl create <thing>, auth, drain) send protobuf bodies
        try:
            return decode_body(raw)
        except ProtobufError as e:
            raise status.bad_request(str(e))
    if "cbor" in ctype:
        raise status.unsupported_media(ctype)
    if not raw.strip():
        raise status.bad_request("the request body is empty")
    return decode(raw, ctype)


def decode(raw: bytes, ctype: str) -> Any:
    if "yaml" in ctype and "apply-patch" not in ctype:
        return _yaml(raw)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        if "apply-patch" in ctype:
            return _yaml(raw)
        raise status.bad_request(f"couldn't get version/kind; json parse error: {e}")


def _yaml(raw: bytes) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise status.bad_request(f"error converting YAML to JSON: {str(e).splitlines()[0]}")
    except (ValueError, RecursionError) as e:
        raise status.bad_request(f"error converting YAML to JSON: {e}")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def json_response(obj: Any, code: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(status=code, body=dumps(obj), content_type="application/json", headers=headers)


def wants_table(request: web.Request) -> bool:
    return TABLE_MARK in request.headers.get("Accept", "")


def check_acceptable(request: web.Request) -> None:
    """We answer JSON to anything that admits it (protobuf-first clients included)."""
    accept = request.headers.get("Accept", "")
    if not accept or "*/*" in accept or "json" in accept or "yaml" in accept:
        return
    if "protobuf" in accept:
        return  # clients that ask for protobuf alone still read JSON by Content-Type
    raise status.not_acceptable(accept)
