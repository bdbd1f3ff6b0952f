"""``issuer drill --html FILE``: the report as one self-contained HTML page (inline CSS and
SVG, no script, nothing fetched) from the Jinja2 template ``drill/templates/report.html``;
the positions come from :mod:`drill.timeline`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from drill import refusals
from drill.timeline import geometry

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _seconds(value: float | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.3f}s"


_ENV.filters["seconds"] = _seconds


def render(report: dict[str, Any]) -> str:
    """The page for ``report`` (what :func:`drill.report.build_report` returns)."""
    return _ENV.get_template("report.html").render(
        report=report,
        picture=geometry(report["timeline"]),
        revocations=[
            (title, section)
            for title, section in (
                (
                    f"User revocation: {report['user_revocation']['username']}"
                    if report.get("user_revocation")
                    else "",
                    report.get("user_revocation"),
                ),
                (
                    f"Key revocation: {report['revocation']['kid']}"
                    if report.get("revocation")
                    else "",
                    report.get("revocation"),
                ),
            )
            if section is not None
        ],
        events_target=refusals.EVENTS_TARGET,
    )


def write_html(report: dict[str, Any], path: Path) -> None:
    """Write the page; OSError when the file cannot be written."""
    path.write_text(render(report), encoding="utf-8")
