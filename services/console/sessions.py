"""Registry API keys entered at /session, kept in this process's memory only: the signed
session cookie carries a random session id and the CSRF token, never the key itself."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import MutableMapping
from typing import Any

SESSION_ID = "sid"


class KeyStore:
    def __init__(self, max_age_s: float, max_sessions: int = 1000) -> None:
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self._keys: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def remember(self, session: MutableMapping[str, Any], key: str) -> None:
        sid = session[SESSION_ID] = secrets.token_urlsafe(24)
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            if len(self._keys) >= self.max_sessions:
                oldest = min(self._keys, key=lambda s: self._keys[s][1])
                del self._keys[oldest]
            self._keys[sid] = (key, now + self.max_age_s)

    def key(self, session: MutableMapping[str, Any]) -> str | None:
        sid = session.get(SESSION_ID)
        if not isinstance(sid, str):
            return None
        with self._lock:
            found = self._keys.get(sid)
            if found is None or found[1] < time.monotonic():
                self._keys.pop(sid, None)
                return None
            return found[0]

    def forget(self, session: MutableMapping[str, Any]) -> None:
        sid = session.pop(SESSION_ID, None)
        if isinstance(sid, str):
            with self._lock:
                self._keys.pop(sid, None)

    def _expire(self, now: float) -> None:
        for sid in [s for s, (_, until) in self._keys.items() if until < now]:
            del self._keys[sid]
