"""The ``htu`` of a DPoP proof (RFC 9449 §4.3): an http(s) URL normalised as RFC 3986 §6.2.2 and
§6.2.3 ask, so a proof's ``htu`` and the request's URL compare equal when they name the same
resource. Framework-free."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

MAX_HTU_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _percent(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, for an absolute path."""
    output: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if output:
                output.pop()
        elif segment != ".":
            output.append(segment)
    trailing = path.endswith(("/.", "/.."))
    return "/" + "/".join(output) + ("/" if trailing and output else "")


def normalize_htu(url: str) -> str:
    """An http(s) URL without query and fragment, normalised as RFC 9449 §4.3 asks (RFC 3986
    §6.2.2 and §6.2.3): scheme and host in lower case, the scheme's default port dropped,
    percent-encodings of unreserved characters decoded and the others in upper case, dot
    segments removed, an empty path as ``/``. ValueError for anything else (a relative URL,
    another scheme, userinfo, characters outside printable ASCII, over ``MAX_HTU_LENGTH``)."""
    if len(url) > MAX_HTU_LENGTH or not all("\x21" <= c <= "\x7e" for c in url):
        raise ValueError("not a printable ASCII URL of reasonable length")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc or "@" in parts.netloc:
        raise ValueError("not an absolute http(s) URL without userinfo")
    host = parts.hostname or ""
    if not host:
        raise ValueError("no host")
    if ":" in host:
        host = f"[{host}]"
    port = parts.port  # ValueError when out of range or not a number
    authority = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    path = _PERCENT.sub(_percent, parts.path) or "/"
    if not path.startswith("/"):
        raise ValueError("not an absolute path")
    return f"{scheme}://{authority}{_remove_dot_segments(path)}"
