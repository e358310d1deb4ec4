"""The web UI's routes: the page, live events over WebSocket, video, camera frames, memory.

Mounted by `joyvl serve` beside `/health` and the MCP endpoint, in the loop's process.

- `GET /` the page (`GET /?token=…` sets the login cookie and redirects to `/`);
- `WS /ui/ws?after=SEQ` every event after SEQ from the store, then live ones from the bus,
  a status snapshot every 2 s, and commands from the page (ask, task, pause, feedback, …);
- `WS /ui/audio` the page's microphone in (16 kHz mono s16le PCM) and the assistant's speech
  out (WAV clips), when the server was started with speech (see `UI.audio`);
- `GET /ui/video.mjpg` the newest source frame as MJPEG, at most `VIDEO_FPS` per second;
- `POST /ui/frames` a JPEG from the browser's camera into a `push` source;
- `GET /ui/recall?q=` memory search; `GET /ui/thumbs/{id}.jpg` a stored keyframe;
- `GET /ui/delegations/{task_id}/artifacts[/{i}]` what a finished delegation produced (an
  HTML artifact is served with `Content-Security-Policy: sandbox`: it cannot run script).

With tokens configured every route needs the cookie (or a bearer header): the page is opened
once as `/?token=…`, which sets an HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections import deque
from collections.abc import AsyncIterator
from importlib import resources
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import (
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import JoyVLError
from ..stream import PushSource, encode_jpeg

if TYPE_CHECKING:
    from ..app import ServeApp

__all__ = ["COMMANDS_PER_S", "COOKIE", "CSP", "MAX_AUDIO_CHUNK", "MAX_COMMAND_CHARS",
           "MAX_WS_MESSAGE", "ui_routes"]

log = logging.getLogger("joyvl_agent.ui")

COOKIE = "joyvl_token"
#: Nothing from a stream or a model runs as script: only the page's own files do.
CSP = ("default-src 'self'; img-src 'self' data: blob:; frame-src 'self' blob: data:; "
       "connect-src 'self'; style-src 'self'; script-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'")
VIDEO_FPS = 4.0
MAX_TEXT_CHARS = 2000
STATUS_EVERY_S = 2.0
FIRST_LOAD_EVENTS = 2000
MAX_AUDIO_CHUNK = 64 * 1024
"""Bytes of PCM one binary message on `/ui/audio` may hold (about 2 s at 16 kHz)."""
MAX_COMMAND_CHARS = 16 * 1024
"""Characters one command on `/ui/ws` may have (an `ask` of `MAX_TEXT_CHARS` fits, escaped)."""
COMMANDS_PER_S = 20
"""Commands one `/ui/ws` socket may send a second; more are refused, never queued."""
MAX_WS_MESSAGE = 1024 * 1024
"""Bytes any WebSocket message to the server may have (uvicorn's `ws_max_size` in `joyvl
serve`): a bigger one closes the socket with 1009 before it is buffered."""
_ASSETS = {"app.js": "text/javascript", "app.css": "text/css",
           "mic-worklet.js": "text/javascript"}
_PERSONAS = ("default", "quiet", "talkative")


def _same_origin(conn: HTTPConnection) -> bool:
    """No `Origin`, or one naming this host: another site's page must not use this
    browser's cookie (or a token-less loopback server) to watch or steer."""
    origin = conn.headers.get("origin")
    return not origin or urlsplit(origin).netloc.lower() == conn.headers.get("host", "").lower()


def _static(name: str) -> bytes:
    return resources.files("joyvl_agent.ui").joinpath("static", name).read_bytes()


class UI:
    """The UI's handlers, bound to the serve app (its session, config and tokens)."""

    def __init__(self, serve: ServeApp) -> None:
        self.serve = serve

    @property
    def session(self) -> Any:
        return self.serve.session

    def _denied(self) -> Response:
        return PlainTextResponse(
            "unauthorized: open this page once as /?token=YOUR_TOKEN", status_code=401)

    async def page(self, request: Request) -> Response:
        token = request.query_params.get("token")
        if token is not None:
            if not self.serve.token_valid(token):
                return self._denied()
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
            return response
        if not self.serve.authorized(request):
            return self._denied()
        return Response(_static("index.html"), media_type="text/html",
                        headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _ASSETS:
            return PlainTextResponse("not found", status_code=404)
        return Response(_static(name), media_type=_ASSETS[name],
                        headers={"X-Content-Type-Options": "nosniff"})

    async def video(self, request: Request) -> Response:
        if not self.serve.authorized(request):
            return self._denied()
        boundary = "frame"

        def part(jpeg: bytes) -> bytes:
            return (f"--{boundary}\r\nContent-Type: image/jpeg\r\nContent-Length: "
                    f"{len(jpeg)}\r\n\r\n").encode() + jpeg + b"\r\n"

        async def parts() -> AsyncIterator[bytes]:
            last, jpeg, sent_at = None, _placeholder(), -1e9
            loop = asyncio.get_running_loop()
            while True:
                frame = self.session.latest_frame
                if frame is not None and frame is not last:
                    last = frame
                    jpeg = (await asyncio.to_thread(
                        encode_jpeg, frame.image, max_pixels=230_400, quality=70)).jpeg
                    sent_at = -1e9
                # a new frame at once; otherwise the same one again every second (a browser
                # shows a part once the next begins, and a gone client is noticed on write)
                if loop.time() - sent_at >= 1.0:
                    sent_at = loop.time()
                    yield part(jpeg)
                await asyncio.sleep(1 / VIDEO_FPS)

        return StreamingResponse(parts(), media_type=f"multipart/x-mixed-replace; "
                                 f"boundary={boundary}", headers={"Cache-Control": "no-store"})

    async def frames(self, request: Request) -> Response:
        if not _same_origin(request):
            return JSONResponse({"error": "cross-site request refused"}, status_code=403)
        if not self.serve.authorized(request, write=True):
            return self._denied()
        source = getattr(self.session, "source", None)
        if not isinstance(source, PushSource):
            return JSONResponse({"error": "this session's source is not `push`: start it "
                                 "with `joyvl serve push` to send the browser's camera"},
                                status_code=409)
        limit = source.max_bytes
        too_big = JSONResponse({"error": f"a frame may be at most {limit} bytes"},
                               status_code=413)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return too_big
        try:
            frame = await source.push(bytes(body))
        except JoyVLError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"t": round(frame.t, 3)})

    async def recall(self, request: Request) -> Response:
        if not self.serve.authorized(request):
            return self._denied()
        query = request.query_params.get("q", "").strip()
        try:
            limit = max(1, min(50, int(request.query_params.get("limit", "10"))))
        except ValueError:
            return JSONResponse({"error": "limit must be a whole number"}, status_code=400)
        try:
            hits = await self.session.recall(query, limit=limit)
        except (JoyVLError, ValueError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"hits": [{
            "t": h.t, "kind": h.kind, "text": h.text, "score": h.score,
            "thumb": f"/ui/thumbs/{h.thumbnail_id}.jpg" if h.thumbnail_id else None,
        } for h in hits]})

    async def artifacts(self, request: Request) -> Response:
        """The artifacts a finished delegation produced: `[{name, mime, url}]`."""
        if not self.serve.authorized(request):
            return self._denied()
        task = self._task(request.path_params["task_id"])
        if task is None:
            return JSONResponse({"error": "no such delegation"}, status_code=404)
        items = task.result.artifacts if task.result else []
        return JSONResponse({"artifacts": [
            {"name": a.name, "mime": a.mime,
             "url": f"/ui/delegations/{task.id}/artifacts/{i}"} for i, a in enumerate(items)]})

    async def artifact(self, request: Request) -> Response:
        """One artifact's bytes, sandboxed: an HTML page opened from here runs no script
        (`Content-Security-Policy: sandbox`), and nothing is sniffed into another type."""
        if not self.serve.authorized(request):
            return self._denied()
        task = self._task(request.path_params["task_id"])
        items = task.result.artifacts if task and task.result else []
        index = request.path_params["index"]
        if index >= len(items):
            return PlainTextResponse("no such artifact", status_code=404)
        item = items[index]
        return Response(item.data, media_type=item.mime, headers={
            "Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; "
                                       "style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"})

    def _task(self, task_id: str) -> Any:
        return next((t for t in self.session.delegation.list() if t.id == task_id), None)

    async def thumb(self, request: Request) -> Response:
        if not self.serve.authorized(request):
            return self._denied()
        store, frame_id = self.session._store, request.path_params["frame_id"]
        record = None
        if store is not None and frame_id < 2**63:
            record = await asyncio.to_thread(store.frame, frame_id)
        if record is None or record.session_id != self.session.session_id:
            return PlainTextResponse("no such thumbnail", status_code=404)
        return Response(record.jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "max-age=3600"})

    async def ws(self, websocket: WebSocket) -> None:
        await websocket.accept()  # then close with a code the page can read
        if not _same_origin(websocket):
            await websocket.close(code=4403, reason="cross-site WebSocket refused")
            return
        if not self.serve.authorized(websocket):
            await websocket.close(code=4401, reason="unauthorized")
            return
        try:
            after = max(0, int(websocket.query_params.get("after", "0")))
        except ValueError:
            after = 0
        writable = self.serve.authorized(websocket, write=True)
        sender = asyncio.create_task(self._send_events(websocket, after))
        receiver = asyncio.create_task(self._receive_commands(websocket, writable))
        try:
            done, _ = await asyncio.wait({sender, receiver},
                                         return_when=asyncio.FIRST_COMPLETED)
            if sender in done and not sender.cancelled() and sender.exception() is not None:
                log.error("the UI event stream failed: %s", sender.exception())
                with contextlib.suppress(Exception):  # the page reconnects and catches up
                    await websocket.close(code=1011, reason="event stream failed")
        finally:
            for task in (sender, receiver):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def audio(self, websocket: WebSocket) -> None:
        """`WS /ui/audio`: the page's microphone and speaker (protocol: `_AudioLink`)."""
        await websocket.accept()
        if not _same_origin(websocket):
            await websocket.close(code=4403, reason="cross-site WebSocket refused")
            return
        if not self.serve.authorized(websocket):
            await websocket.close(code=4401, reason="unauthorized")
            return
        link = _AudioLink(websocket, getattr(self.serve, "speech_input", None),
                          getattr(self.serve, "browser_audio", None),
                          writable=self.serve.authorized(websocket, write=True),
                          echo_guard=self.serve.config.speech.echo_guard)
        await link.run()

    async def _receive_commands(self, websocket: WebSocket, writable: bool) -> None:
        """One command at a time, each answered; what a page may not send (binary, too
        long, too many) gets an error reply, and the socket stays open."""
        loop = asyncio.get_running_loop()
        recent: deque[float] = deque()  # when the commands of the last second came
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text, now = message.get("text"), loop.time()
                while recent and now - recent[0] >= 1.0:
                    recent.popleft()
                if text is None:
                    reply = _refused("a command is a JSON text message, not binary")
                elif len(text) > MAX_COMMAND_CHARS:
                    reply = _refused(f"a command is {len(text)} characters; at most "
                                     f"{MAX_COMMAND_CHARS}")
                elif len(recent) >= COMMANDS_PER_S:
                    reply = _refused(f"too many commands: at most {COMMANDS_PER_S} a second; "
                                     "wait a moment and send it again")
                else:
                    recent.append(now)
                    reply = await self._command(text, writable)
                await websocket.send_text(json.dumps(reply))

    async def _send_events(self, websocket: WebSocket, after: int) -> None:
        session = self.session
        sub = session.bus.subscribe(maxsize=10_000)
        try:
            upto = session.bus.last_seq
            if after == 0:  # a new page: the recent past is enough to fill its views
                after = max(0, upto - FIRST_LOAD_EVENTS)
            backlog = await asyncio.to_thread(
                session._store.events, session.session_id, after_seq=after)
            for event in backlog:
                if event.seq <= upto:
                    await websocket.send_text(_event_message(event))
            last_status = -STATUS_EVERY_S
            loop = asyncio.get_running_loop()
            while True:
                event = await _next_or_none(sub, STATUS_EVERY_S)
                if sub.take_missed():  # a page that fell behind reconnects and catches up
                    await websocket.close(code=4000, reason="fell behind: reconnect")
                    return
                if event is not None and event.seq > upto:
                    await websocket.send_text(_event_message(event))
                now = loop.time()
                if now - last_status >= STATUS_EVERY_S:
                    last_status = now
                    await websocket.send_text(json.dumps(
                        {"type": "status", "status": session.status().model_dump(mode="json")}))
        finally:
            sub.close()

    async def _command(self, message: str, writable: bool) -> dict[str, Any]:
        try:
            data = json.loads(message)
            if not isinstance(data, dict):
                raise ValueError("a command is a JSON object")
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            return _refused(f"bad command: {str(exc)[:200]}")
        cid = data.get("id")
        if not writable:
            return {"type": "reply", "id": cid, "ok": False,
                    "error": "this token may watch but not steer (read scope)"}
        try:
            result = await self._apply(data)
        except (JoyVLError, ValueError, TypeError, KeyError) as exc:
            return {"type": "reply", "id": cid, "ok": False, "error": str(exc)}
        return {"type": "reply", "id": cid, "ok": True, "result": result}

    async def _apply(self, data: dict[str, Any]) -> dict[str, Any]:
        session, op = self.session, data.get("op")
        if op in ("ask", "task"):
            text = str(data["text"])
            if len(text) > MAX_TEXT_CHARS:
                raise ValueError(f"text is {len(text)} characters; at most {MAX_TEXT_CHARS}")
            if session.state == "stopped":
                raise ValueError("the session has stopped (its source ended): nothing would "
                                 "answer")
        if op == "ask":  # the answer arrives as a `speech` event (reason "answer")
            await session.model.submit_question(text)
        elif op == "task":
            await session.set_task(text)
        elif op == "clear_task":
            await session.clear_task()
        elif op == "pause":
            session.pause()
        elif op == "resume":
            session.resume()
        elif op == "reset":
            await session.reset()
        elif op == "interval":
            session.set_interval(float(data["seconds"]))
        elif op == "persona":
            if data.get("persona") not in _PERSONAS:
                raise ValueError(f"persona must be one of {', '.join(_PERSONAS)}")
            session.set_persona(data["persona"])
        elif op == "feedback":  # on a decision: wrong, late or missing (`Session.feedback`)
            event = await session.feedback(
                str(data.get("verdict")), seq=data.get("seq"), at_t=data.get("at_t"),
                correction=data.get("correction"))
            return {"seq": event.seq}
        else:
            raise ValueError(f"unknown op {op!r}: use ask, task, clear_task, pause, resume, "
                             "reset, interval, persona or feedback")
        return {}


class _AudioLink:
    """One page on `/ui/audio`: its microphone into a `SpeechInput` stream named "browser",
    and the assistant's speech from `BrowserAudio` out to it.

    Server to page (text messages are JSON objects):

    - `{"type": "hello", "listening": bool, "speaking": bool, "sample_rate": 16000,
      "max_chunk_bytes": int}` first: whether the microphone is taken (the server listens and
      the token may write) and whether speech is played here;
    - `{"type": "play", "id": n, "duration_s": d}` then one binary message: a WAV clip;
    - `{"type": "stop"}`: cut the clip playing now and drop the queued ones (barge-in);
    - `{"type": "state", "hands_free": bool, "ptt": bool, "echo_guard": bool,
      "speaker": bool}` after each control message;
    - `{"type": "error", "error": str}` for a message refused; the socket stays open.

    Page to server:

    - binary: PCM, signed 16-bit little-endian mono at 16 kHz, at most `MAX_AUDIO_CHUNK`
      bytes; used only while hands-free is on or push-to-talk is held (else ignored);
    - `{"type": "ptt", "down": bool}`: push-to-talk pressed (barge-in, listen) or released
      (the utterance ends now);
    - `{"type": "hands_free", "on": bool}`: listen all the time, or only while PTT is held;
    - `{"type": "echo_guard", "on": bool}`: off with headphones (talking over the assistant
      then interrupts it);
    - `{"type": "speaker", "on": bool}`: play the assistant's speech on this page or not (a
      page with its speaker off is no listener: the speech queue does not wait on it).

    Microphone messages need a full-scope token; listening to speech needs any.
    """

    def __init__(self, websocket: WebSocket, speech_input: Any, browser_audio: Any, *,
                 writable: bool, echo_guard: bool = True) -> None:
        self.websocket = websocket
        self.echo_guard = echo_guard
        self.speech_input = speech_input
        self.browser_audio = browser_audio
        self.writable = writable
        self.stream: Any = None
        self.listener: Any = None
        self.forwarders: set[asyncio.Task[None]] = set()
        self.hands_free = False
        self.ptt = False
        self.ignored = 0
        self._send_lock = asyncio.Lock()

    async def run(self) -> None:
        if self.speech_input is not None and self.writable:
            try:
                self.stream = self.speech_input.open_stream(
                    "browser", echo_guard=self.echo_guard)
            except Exception:  # the page still gets speech; it is told it cannot talk
                log.exception("could not open the browser's audio input")
        try:
            # a page plays speech until it says otherwise; hello still goes first (it takes
            # the send lock before the forwarder can run)
            self._set_speaker(True)
            await self._send({"type": "hello", "listening": self.stream is not None,
                              "speaking": self.browser_audio is not None,
                              "sample_rate": 16_000, "max_chunk_bytes": MAX_AUDIO_CHUNK})
            await self._receive()
        except WebSocketDisconnect:
            pass
        finally:
            self._set_speaker(False)
            for task in list(self.forwarders):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.stream is not None:
                try:
                    self.stream.close()
                except Exception:
                    log.exception("closing the browser's audio input failed")

    async def _send(self, message: dict[str, Any] | str | bytes) -> None:
        async with self._send_lock:
            await self._send_unlocked(message)

    async def _send_unlocked(self, message: dict[str, Any] | str | bytes) -> None:
        if isinstance(message, bytes):
            await self.websocket.send_bytes(message)
        else:
            await self.websocket.send_text(
                message if isinstance(message, str) else json.dumps(message))

    async def _error(self, text: str) -> None:
        await self._send({"type": "error", "error": text})

    async def _receive(self) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                await self._audio(message["bytes"])
            elif message.get("text") is not None:
                await self._control(message["text"])

    async def _audio(self, pcm: bytes) -> None:
        if self.stream is None:
            await self._error(self._no_mic_reason())
            return
        if len(pcm) > MAX_AUDIO_CHUNK:
            await self._error(f"an audio chunk is {len(pcm)} bytes; at most "
                              f"{MAX_AUDIO_CHUNK}")
            return
        if not (self.hands_free or self.ptt):  # the server decides, not only the page
            self.ignored += 1
            return
        try:
            self.stream.push(pcm)
        except ValueError as exc:
            await self._error(f"bad audio chunk: {exc}")
        except Exception as exc:
            log.exception("the browser's audio input failed on a chunk")
            await self._error(f"audio input failed: {exc}")

    def _no_mic_reason(self) -> str:
        if self.speech_input is None:
            return "this server does not listen: start `joyvl serve` with speech input"
        if not self.writable:
            return "this token may listen but not talk (read scope)"
        return "the microphone input is unavailable (see the server's log)"

    async def _control(self, text: str) -> None:
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("a message is a JSON object")
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            await self._error(f"bad message: {str(exc)[:200]}")
            return
        kind = data.get("type")
        field = {"ptt": "down", "hands_free": "on", "echo_guard": "on",
                 "speaker": "on"}.get(str(kind))
        if field is None:
            await self._error(f"unknown message type {kind!r}: use ptt, hands_free, "
                              "echo_guard or speaker")
            return
        value = data.get(field)
        if not isinstance(value, bool):
            await self._error(f"{kind} needs {field!r}: true or false")
            return
        if kind == "speaker":
            if self.browser_audio is None:
                await self._error("this server does not speak to the page")
                return
            self._set_speaker(value)
        elif self.stream is None:
            await self._error(self._no_mic_reason())
            return
        else:
            try:
                self._apply_mic(kind, value)
            except Exception as exc:
                log.exception("the browser's audio input refused %s", kind)
                await self._error(f"{kind} failed: {exc}")
                return
        await self._send({"type": "state", "hands_free": self.hands_free, "ptt": self.ptt,
                          "echo_guard": bool(getattr(self.stream, "echo_guard", True)),
                          "speaker": self.listener is not None})

    def _apply_mic(self, kind: str, value: bool) -> None:
        if kind == "ptt":
            if value != self.ptt:  # a repeated press is no new utterance
                self.stream.push_to_talk(value)
                self.ptt = value
        elif kind == "hands_free":
            self.hands_free = value
            if not value and not self.ptt:  # the page stops sending: what was said is done
                self.stream.end_utterance()
        else:
            self.stream.echo_guard = value

    def _set_speaker(self, on: bool) -> None:
        if on and self.listener is None and self.browser_audio is not None:
            self.listener = self.browser_audio.attach()
            task = asyncio.create_task(self._forward(self.listener), name="ui-audio-forward")
            self.forwarders.add(task)
            task.add_done_callback(self.forwarders.discard)
        elif not on and self.listener is not None:
            self.browser_audio.detach(self.listener)  # its forwarder ends by itself
            self.listener = None

    async def _forward(self, listener: Any) -> None:
        """Send the listener's clips and stops to the page until it is detached."""
        while True:
            try:
                messages = await listener.get()
            except EOFError:
                return
            try:
                async with self._send_lock:  # a clip's header and its WAV stay together
                    for message in messages:
                        await self._send_unlocked(message)
            except Exception as exc:  # the page went away: the receiver sees it too
                log.debug("stopped sending speech to a page: %r", exc)
                return


@functools.cache
def _placeholder() -> bytes:
    """A small dark-grey JPEG shown until the source has a frame."""
    import numpy as np

    return encode_jpeg(np.full((90, 160, 3), 40, np.uint8), quality=60).jpeg


async def _next_or_none(sub: Any, timeout: float) -> Any:
    try:
        return await asyncio.wait_for(sub.get(), timeout)
    except TimeoutError:
        return None


def _refused(error: str) -> dict[str, Any]:
    return {"type": "reply", "id": None, "ok": False, "error": error}


def _event_message(event: Any) -> str:
    return json.dumps({"type": "event", "event": event.model_dump(mode="json")})


def ui_routes(serve: ServeApp) -> list[Route | WebSocketRoute]:
    """The UI's routes for `build_app`."""
    ui = UI(serve)
    return [
        Route("/", ui.page),
        Route("/ui/video.mjpg", ui.video),
        Route("/ui/frames", ui.frames, methods=["POST"]),
        Route("/ui/recall", ui.recall),
        Route("/ui/thumbs/{frame_id:int}.jpg", ui.thumb),
        Route("/ui/delegations/{task_id}/artifacts", ui.artifacts),
        Route("/ui/delegations/{task_id}/artifacts/{index:int}", ui.artifact),
        WebSocketRoute("/ui/ws", ui.ws),
        WebSocketRoute("/ui/audio", ui.audio),
        Route("/ui/{name}", ui.asset),
    ]
