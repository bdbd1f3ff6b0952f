"""tests/support/web.py: one TLS context for the test process, and the tests kept on it."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.harness.processes import default_tls
from tests.support import web

TESTS = Path(__file__).resolve().parents[1]
HTTPX_CALLS = {"get", "post", "put", "patch", "delete", "head", "options", "request", "stream"}
HTTPX_CLIENTS = {"Client", "AsyncClient"}


@pytest.fixture
def contexts_made(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the TLS contexts made with the default CA bundle from now on."""
    made: list[int] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    return made


def test_httpx_makes_a_tls_context_per_client(contexts_made: list[int]) -> None:
    """The cost web.py avoids: a context (a CA bundle load) for every client httpx makes."""
    for _ in range(3):
        httpx.Client().close()
    assert len(contexts_made) == 3


def test_web_clients_share_one_context(contexts_made: list[int]) -> None:
    for _ in range(3):
        web.Client(timeout=1).close()
    with pytest.raises(httpx.ConnectError):
        web.get("http://127.0.0.1:9/", timeout=1)  # the discard port: nothing listens
    with pytest.raises(httpx.ConnectError):
        web.post("http://127.0.0.1:9/", data={"a": "b"}, timeout=1)
    assert contexts_made == []


def test_the_process_harness_polls_on_the_same_context() -> None:
    """bench/harness/processes.py's readiness wait uses its default context unless a server
    asks for its own: the one web.py hands out."""
    assert default_tls() is default_tls()
    assert web.TLS is default_tls()


def test_a_test_can_still_choose_its_own_tls_settings() -> None:
    own = ssl.create_default_context()
    client = web.Client(verify=own)
    try:
        pool = client._transport._pool  # type: ignore[attr-defined]
        assert pool._ssl_context is own
    finally:
        client.close()
    shared = web.Client()
    try:
        assert shared._transport._pool._ssl_context is web.TLS  # type: ignore[attr-defined]
    finally:
        shared.close()


def _direct_httpx(path: Path, root: Path = TESTS.parent) -> list[str]:
    """Calls in ``path`` that make an httpx client with its own new TLS context: httpx.get(...)
    and the like, httpx.Client(...) / AsyncClient(...) without ``transport=`` or ``verify=``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        if not (isinstance(owner, ast.Name) and owner.id == "httpx"):
            continue
        keywords = {k.arg for k in node.keywords}
        call = node.func.attr in HTTPX_CALLS and "verify" not in keywords
        client = node.func.attr in HTTPX_CLIENTS and not keywords & {"transport", "verify"}
        if call or client:
            found.append(f"{path.relative_to(root)}:{node.lineno} httpx.{node.func.attr}")
    return found


def test_the_rule_finds_direct_calls(tmp_path: Path) -> None:
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import httpx\n"
        "httpx.get('http://x')\n"
        "httpx.Client(timeout=1)\n"
        "httpx.AsyncClient(transport=None)\n"
        "httpx.post('http://x', verify=False)\n"
        "web.get('http://x')\n"
    )
    assert _direct_httpx(sample, tmp_path) == [
        "test_sample.py:2 httpx.get",
        "test_sample.py:3 httpx.Client",
    ]


def test_tests_make_their_http_clients_through_web() -> None:
    own = {Path(web.__file__).resolve(), Path(__file__).resolve()}
    found = [
        hit
        for path in sorted(TESTS.rglob("*.py"))
        if path.resolve() not in own
        for hit in _direct_httpx(path)
    ]
    assert found == [], "use tests.support.web (why: its docstring):\n" + "\n".join(found)
