"""The dashboard's password gate (ODDEYE_UI_PASSWORD), with a growing wait after each wrong password per client."""

from __future__ import annotations

import hmac
import math
import os
import threading
import time
from typing import Callable

import streamlit as st

FIRST_WAIT_S = 1.0
MAX_WAIT_S = 60.0
MAX_CLIENTS = 10_000


class Throttle:
    """Wrong-password waits per client: after n wrong tries in a row the next try is refused for
    min(first * 2**(n-1), cap) seconds; a right password clears the client's count."""

    def __init__(self, first: float = FIRST_WAIT_S, cap: float = MAX_WAIT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.first, self.cap, self.clock = first, cap, clock
        self._fails: dict[str, tuple[int, float]] = {}  # client -> (wrong tries in a row, may try again at)
        self._lock = threading.Lock()

    def wait(self, client: str) -> float:
        """Seconds `client` must still wait before its next try is checked (0 when it may try now)."""
        with self._lock:
            _, until = self._fails.get(client, (0, 0.0))
        return max(0.0, until - self.clock())

    def failed(self, client: str) -> float:
        """Record a wrong try of `client`; the wait (s) it now has before the next one."""
        with self._lock:
            n = self._fails.get(client, (0, 0.0))[0] + 1
            delay = min(self.first * 2 ** (n - 1), self.cap)
            if len(self._fails) >= MAX_CLIENTS:  # forget the client whose wait ended longest ago
                del self._fails[min(self._fails, key=lambda k: self._fails[k][1])]
            self._fails[client] = (n, self.clock() + delay)
            return delay

    def passed(self, client: str) -> None:
        """A right password: forget the client's wrong tries."""
        with self._lock:
            self._fails.pop(client, None)


THROTTLE = Throttle()  # one per server process: every session of a client shares its count


def client_key() -> str:
    """Who is trying: the client's IP address as Streamlit sees it ("unknown" when it does not say)."""
    try:
        ip = st.context.ip_address
    except Exception:  # noqa: BLE001 - an older Streamlit, or no server behind the session
        ip = None
    return ip if isinstance(ip, str) and ip else "unknown"


def _check(want: str) -> None:
    """on_change of the password box: check it unless the client must still wait."""
    got = st.session_state.get("password") or ""
    if not got:
        return
    client = client_key()
    wait = THROTTLE.wait(client)
    if wait > 0:
        st.session_state["gate_msg"] = f"Too many wrong passwords: try again in {math.ceil(wait)} s."
    elif hmac.compare_digest(got.encode(), want.encode()):
        THROTTLE.passed(client)
        st.session_state["authenticated"] = True
        st.session_state.pop("gate_msg", None)
    else:
        delay = THROTTLE.failed(client)
        st.session_state["gate_msg"] = f"Wrong password. The next try is checked after {math.ceil(delay)} s."
    st.session_state["password"] = ""


def password_gate() -> None:
    """Stop the page until the password in ODDEYE_UI_PASSWORD is entered (no gate when it is unset)."""
    want = os.environ.get("ODDEYE_UI_PASSWORD")
    if not want or st.session_state.get("authenticated"):
        return
    st.title("oddeye review")
    st.text_input("Password", type="password", key="password", on_change=_check, args=(want,))
    if st.session_state.get("gate_msg"):
        st.error(st.session_state["gate_msg"])
    st.stop()
