"""The demo resource: items per ``sub``, in a SQLite file of the service's own."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

MAX_TITLE = 200


class ItemStore:
    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, sub TEXT NOT NULL, "
                "title TEXT NOT NULL, created_at REAL NOT NULL)"
            )
            self._db.execute("CREATE INDEX IF NOT EXISTS ix_items_sub ON items (sub)")

    def list(self, sub: str) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, title, created_at FROM items WHERE sub = ? ORDER BY created_at, id",
                (sub,),
            ).fetchall()
        return [{"id": r[0], "title": r[1], "created_at": r[2]} for r in rows]

    def create(self, sub: str, title: str) -> dict[str, Any]:
        item = {"id": uuid.uuid4().hex, "title": title, "created_at": time.time()}
        with self._lock:
            self._db.execute(
                "INSERT INTO items (id, sub, title, created_at) VALUES (?, ?, ?, ?)",
                (item["id"], sub, title, item["created_at"]),
            )
        return item

    def close(self) -> None:
        with self._lock:
            self._db.close()
