"""httpx for the tests, with one TLS context for the whole test process.

httpx builds a new ``ssl.SSLContext`` for every client it makes, and every top-level call
(``httpx.get``, ``httpx.post``) makes a client: loading the CA bundle into it costs about 55 ms
of CPU each time. The tests made some 1,300 of them in a run of the suite (readiness polls,
token requests in loops), over a minute of CPU on two cores, for a context that requests to
``http://127.0.0.1`` never use.

:data:`TLS` is httpx's own default context (certifi's CA bundle, certificate and hostname
checks on), built once. Everything else is as httpx does it: each call below is a client and a
connection of its own, closed after the answer, exactly as ``httpx.get`` gives. A test that
needs other TLS settings passes ``verify=`` itself. tests/support/test_web.py keeps the tests
on this module (a direct ``httpx.get`` or ``httpx.Client()`` in a test file fails it).
"""

from __future__ import annotations

from typing import Any

import httpx

from bench.harness.processes import default_tls

TLS = default_tls()  # the same context the process harness's readiness polls use


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("verify", TLS)
    return httpx.request(method, url, **kwargs)


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def head(url: str, **kwargs: Any) -> httpx.Response:
    return request("HEAD", url, **kwargs)


def Client(**kwargs: Any) -> httpx.Client:
    kwargs.setdefault("verify", TLS)
    return httpx.Client(**kwargs)
