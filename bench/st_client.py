"""A minimal Streamlit client: one session over the server's WebSocket, driven the way Streamlit's
frontend drives it, for load tests that must not spend the server's cores on real browsers.

What it does, as the frontend (Streamlit 1.67) does:
- opens ``/_stcore/stream`` and asks for a page (``rerun_script`` with the page's URL path and query);
- re-runs each fragment the server gave a timer (an ``auto_rerun`` message) every ``interval``
  seconds, with ``fragment_id`` and ``is_auto_rerun`` set, and clears every timer when a full run
  starts (a ``new_session`` message whose run names no fragment) to arm them again from that run's
  messages;
- presses a button (a ``trigger_value``) by its label.

It sends no other widget values: the server keeps each widget's value in the session's state. It
renders nothing; ``on_element(element_type, element, fragment_id)`` sees every element delta as it
arrives, and ``requests`` counts the fragment reruns it sent, per fragment.

Cookies, for a proxy with sticky sessions (deploy/): given a cookie jar (``cookies``, a dict shared by
the sessions of one "browser"), the session first loads the page over HTTP as a browser does, keeps
every ``Set-Cookie`` of that response (HAProxy's ``LLSRV=<replica>``) in the jar, and sends the jar
on the WebSocket upgrade, so that the upgrade reaches the replica that served the page. Without a jar
it makes no HTTP request and sends no cookie, as before. ``url`` is the address the browser would
show now: the server's ``st.query_params`` changes (``page_info_changed``) update it, as the frontend
updates its location bar; reconnecting to ``url`` is what a reload does.
"""
from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from urllib.parse import urlsplit, urlunsplit


class StreamlitSession:
    def __init__(self, url: str, on_element: Callable | None = None, cookies: dict[str, str] | None = None,
                 follow_url: bool = False) -> None:
        """``url``: the page's address, e.g. ``http://127.0.0.1:8501/train?tr_beta=2``. ``cookies``: a
        cookie jar (see the module docstring); it is updated in place. ``follow_url``: send the query
        string the server last set (``url``) with every later rerun, as the frontend does; by default
        every rerun sends the query of the address the session was opened with."""
        parts = urlsplit(url)
        self._parts = parts
        self.ws_url = f"ws://{parts.netloc}/_stcore/stream"
        self.origin = f"http://{parts.netloc}"
        self.page_name, self.query = parts.path.strip("/"), parts.query
        self.url_query = parts.query  # the query the server last put in the URL (st.query_params)
        self.follow_url = follow_url
        self.cookies = cookies
        self.page_headers = None  # the HTTP response headers of the page (with a cookie jar)
        self.upgrade_headers = None  # the WebSocket upgrade's response headers
        self.on_element = on_element or (lambda kind, el, fragment_id: None)
        self.buttons: dict[str, str] = {}  # label -> widget id, from the elements drawn so far
        self.full_runs = 0
        self.runs_finished = 0
        self.requests: Counter[str] = Counter()  # fragment id -> timer reruns sent
        self.timers: dict[str, asyncio.Task] = {}
        self.drawn = asyncio.Event()  # set when a full run has finished (not one stopped early)
        self._ws = None
        self._page_hash = ""

    async def run(self, stop: asyncio.Event, after_first_run: Callable | None = None) -> None:
        """Connect, load the page and follow it until ``stop`` is set. ``after_first_run(self)`` (a
        coroutine function) is awaited once, when the first full run has finished (not one stopped early)."""
        import websockets
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        headers = None
        if self.cookies is not None:
            await asyncio.to_thread(self.load_page)
            if self.cookies:
                headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        async with websockets.connect(self.ws_url, subprotocols=["streamlit"], origin=self.origin,
                                      max_size=None, additional_headers=headers) as ws:
            self._ws = ws
            self.upgrade_headers = ws.response.headers
            if self.cookies is not None:
                self._keep_cookies(ws.response.headers.get_all("Set-Cookie"))
            await self.rerun()
            halt = asyncio.ensure_future(stop.wait())
            pending_first = after_first_run
            try:
                while True:
                    reader = asyncio.ensure_future(ws.recv())
                    done, _ = await asyncio.wait({reader, halt}, return_when=asyncio.FIRST_COMPLETED)
                    if halt in done:
                        reader.cancel()
                        break
                    msg = ForwardMsg()
                    msg.ParseFromString(reader.result())
                    self._handle(msg)
                    if pending_first and self.drawn.is_set():
                        first, pending_first = pending_first, None
                        await first(self)
            finally:
                halt.cancel()
                for t in self.timers.values():
                    t.cancel()
                self.timers.clear()

    @property
    def url(self) -> str:
        """The page's address as the browser would show it now (with the query the server set)."""
        return urlunsplit(self._parts._replace(query=self.url_query))

    def load_page(self) -> None:
        """GET the page over HTTP with the jar's cookies, as a browser does before it opens the
        WebSocket, and keep the cookies the response sets (blocking: call it in a thread)."""
        import urllib.request

        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        with urllib.request.urlopen(urllib.request.Request(self.url, headers=headers), timeout=30) as r:
            r.read()
            self.page_headers = r.headers
            self._keep_cookies(r.headers.get_all("Set-Cookie") or [])

    def _keep_cookies(self, set_cookies) -> None:
        for line in set_cookies:
            name, sep, value = line.split(";", 1)[0].strip().partition("=")
            if sep and name:
                self.cookies[name] = value

    def _handle(self, msg) -> None:
        kind = msg.WhichOneof("type")
        if kind == "page_info_changed":
            self.url_query = msg.page_info_changed.query_string
            if self.follow_url:
                self.query = self.url_query
        elif kind == "navigation":
            # The page this run shows (with st.navigation, new_session may name the main script).
            self._page_hash = msg.navigation.page_script_hash
        elif kind == "new_session":
            if msg.metadata.run.fragment_ids:
                return  # a fragment run
            self.full_runs += 1
            for t in self.timers.values():
                t.cancel()
            self.timers.clear()
        elif kind == "auto_rerun":
            fid, every = msg.auto_rerun.fragment_id, msg.auto_rerun.interval
            if fid in self.timers:
                self.timers.pop(fid).cancel()
            if every > 0:
                self.timers[fid] = asyncio.ensure_future(self._tick(fid, every))
        elif kind == "script_finished":
            self.runs_finished += 1
            if msg.script_finished == msg.FINISHED_SUCCESSFULLY and self.full_runs:
                self.drawn.set()
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            el = msg.delta.new_element
            what = el.WhichOneof("type")
            if what == "button":
                self.buttons[el.button.label] = el.button.id
            self.on_element(what, getattr(el, what), msg.delta.fragment_id)

    async def _tick(self, fragment_id: str, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            self.requests[fragment_id] += 1
            await self.rerun(fragment_id=fragment_id)

    async def rerun(self, trigger: str | None = None, fragment_id: str | None = None) -> None:
        """Send a rerun request: the whole page, with ``trigger`` (a widget id) pressed, or one fragment."""
        from streamlit.proto.BackMsg_pb2 import BackMsg
        msg = BackMsg()
        cs = msg.rerun_script
        cs.query_string, cs.page_name, cs.page_script_hash = self.query, self.page_name, self._page_hash
        if trigger:
            w = cs.widget_states.widgets.add()
            w.id, w.trigger_value = trigger, True
        if fragment_id:
            cs.fragment_id, cs.is_auto_rerun = fragment_id, True
        await self._ws.send(msg.SerializeToString())

    async def press(self, label_part: str) -> bool:
        """Press the button whose label contains ``label_part``; False if the page has none."""
        wid = next((i for label, i in self.buttons.items() if label_part in label), None)
        if wid is not None:
            await self.rerun(trigger=wid)
        return wid is not None


def run_async(coro):
    """``asyncio.run(coro)`` in a thread of its own, and its result: callable where an event loop
    already runs in this thread (Playwright's sync API keeps one running in pytest's)."""
    import threading

    out: dict = {}

    def main() -> None:
        try:
            out["result"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            out["error"] = exc

    t = threading.Thread(target=main, name="st-client")
    t.start()
    t.join()
    if "error" in out:
        raise out["error"]
    return out["result"]
