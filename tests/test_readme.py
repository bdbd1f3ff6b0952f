"""The README is the user's reference: its walkthrough is what ``./scripts/up`` prints, it names
every module of the code in its architecture table, and it links to nothing outside the
repository."""

from __future__ import annotations

import re
from pathlib import Path

from issuer.seed import DEMO_CLIENT_ID, DEMO_USERNAME, walkthrough

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
PACKAGES = ("shared", "serving", "issuer", "resource_service", "drill", "bench", "webapp")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_the_walkthrough_is_what_scripts_up_prints() -> None:
    printed = walkthrough(
        {
            "client_id": DEMO_CLIENT_ID,
            "client_secret": "SECRET",
            "username": DEMO_USERNAME,
            "password": "PASSWORD",
        },
        "http://127.0.0.1:8000",
        "http://127.0.0.1:8001",
        "http://127.0.0.1:8002",
    )
    commands = printed.split("Walkthrough (paste into bash):\n\n", 1)[1].strip()
    block = re.search(r"```sh\n(.*?)```", _section("Walkthrough"), re.S)
    assert block is not None
    assert block.group(1).strip() == commands


def _modules() -> list[str]:
    """Every module of the shipped packages and the bench, as ``package/sub/module``."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path.name == "__init__.py" or "migrations" in path.parts:
                continue
            found.append(path.relative_to(ROOT).with_suffix("").as_posix())
    return found


def test_the_architecture_table_names_every_module() -> None:
    table = _section("Architecture")
    missing = [m for m in _modules() if f"`{m.split('/', 1)[1]}`" not in table]
    assert missing == []


def test_no_link_leaves_the_repository() -> None:
    targets = re.findall(r"\]\(([^)]+)\)", README)
    outside = [t for t in targets if t.startswith("..") or t.startswith("/")]
    assert outside == []
