"""Image references, normalised the way Docker and containerd do (distribution/reference).

"nginx" -> docker.io/library/nginx:latest; "localhost:5000/x" keeps its domain; a digest without a tag
stays untagged; a reference with both a tag and a digest keeps only the digest (ParseDockerRef).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = _ALNUM + r"(?:" + _SEPARATOR + _ALNUM + r")*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_NAME = _DOMAIN_COMPONENT + r"(?:\." + _DOMAIN_COMPONENT + r")*"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = r"(?:" + _DOMAIN_NAME + "|" + _IPV6 + r")(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REMOTE = _PATH_COMPONENT + r"(?:/" + _PATH_COMPONENT + r")*"

_REFERENCE_RE = re.compile(r"^((?:" + _DOMAIN + r"/)?" + _REMOTE + r")(?::(" + _TAG + r"))?(?:@(" + _DIGEST + r"))?$",
                           re.ASCII)
_NAME_RE = re.compile(r"^(?:(" + _DOMAIN + r")/)?(" + _REMOTE + r")$", re.ASCII)
_IDENTIFIER_RE = re.compile(r"^[a-f0-9]{64}$")
_DIGEST_LENGTHS = {"sha256": 64, "sha384": 96, "sha512": 128}


class InvalidReference(ValueError):
    """The string is not a valid image reference; the message says why, naming it."""


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """The normalised repository name, e.g. "docker.io/library/nginx"."""
        return f"{self.domain}/{self.path}"

    def string(self) -> str:
        """The full normalised reference: "docker.io/library/nginx:latest" or "...@sha256:..."."""
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def familiar(self) -> str:
        """The short form Docker shows: "nginx:latest", "user/app:1", "localhost:5000/x@sha256:..."."""
        path = self.path
        if self.domain == DEFAULT_DOMAIN:
            if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX):]:
                path = path[len(OFFICIAL_PREFIX):]
            s = path
        else:
            s = f"{self.domain}/{path}"
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_digest(self, digest: str) -> "Reference":
        """The same repository pinned to digest (the tag dropped): a repo digest."""
        return Reference(self.domain, self.path, None, digest)

    def with_tag(self, tag: str) -> "Reference":
        return Reference(self.domain, self.path, tag, None)

    def __str__(self) -> str:
        return self.string()


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if not sep:
        return DEFAULT_DOMAIN, OFFICIAL_PREFIX + name
    if first == "localhost":
        domain, remote = first, rest
    elif first == LEGACY_DEFAULT_DOMAIN:
        domain, remote = DEFAULT_DOMAIN, rest
    elif any(c in first for c in ".:") or first.lower() != first:
        domain, remote = first, rest
    else:
        domain, remote = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in remote:
        remote = OFFICIAL_PREFIX + remote
    return domain, remote


def is_identifier(s: str) -> bool:
    """True for a bare 64-hex image ID (not a name)."""
    return bool(_IDENTIFIER_RE.match(s))


def validate_digest(d: str) -> str:
    """Check "algo:hex" (sha256/sha384/sha512 with the right length); return it or raise InvalidReference."""
    algo, sep, hexpart = d.partition(":")
    if not sep or algo not in _DIGEST_LENGTHS:
        raise InvalidReference(f"invalid digest {d!r}: unsupported digest algorithm")
    if len(hexpart) != _DIGEST_LENGTHS[algo] or not re.fullmatch(r"[a-f0-9]+", hexpart):
        raise InvalidReference(f"invalid digest {d!r}: invalid checksum digest format")
    return d


def parse(name: str, *, default_tag: bool = True) -> Reference:
    """Parse and normalise an image name as Docker does. Without tag or digest the tag "latest" is
    added (unless default_tag is False); with both, only the digest is kept."""
    if not isinstance(name, str) or not name:
        raise InvalidReference("invalid reference format: image name is empty")
    if is_identifier(name):
        raise InvalidReference(f"invalid repository name ({name}), cannot specify 64-byte hexadecimal strings")
    domain, remainder = _split_domain(name)
    remote = remainder.split("@", 1)[0]
    # a ":" in the remainder before any "@" starts the tag
    remote_name = remote.split(":", 1)[0]
    if remote_name.lower() != remote_name:
        raise InvalidReference(f"invalid reference format: repository name ({remote_name}) must be lowercase")
    full = f"{domain}/{remainder}"
    m = _REFERENCE_RE.match(full)
    if not m:
        raise InvalidReference(f"invalid reference format: {name!r}")
    repo, tag, digest = m.group(1), m.group(2), m.group(3)
    if len(repo) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReference(f"invalid reference {name!r}: repository name must not be more than "
                               f"{NAME_TOTAL_LENGTH_MAX} characters")
    nm = _NAME_RE.match(repo)
    if not nm:  # pragma: no cover - the reference regexp already matched
        raise InvalidReference(f"invalid reference format: {name!r}")
    if digest:
        validate_digest(digest)
        tag = None
    elif not tag and default_tag:
        tag = DEFAULT_TAG
    return Reference(nm.group(1) or DEFAULT_DOMAIN, nm.group(2), tag, digest)


def normalize(name: str) -> str:
    """parse(name).string()."""
    return parse(name).string()
