"""Delegation tools: the decorator, the registry and its entry points, the LangChain, OpenAI
and webhook adapters, and the example. (MCP targets: tests/test_tools_mcp.py.)"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import logging
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from langchain_core.messages import ToolMessage
from langchain_core.tools import ToolException, tool

import joyvl_agent.tools as tools_pkg
from joyvl_agent.delegation_types import MAX_RESULT_CHARS
from joyvl_agent.errors import DelegationError
from joyvl_agent.stream import encode_jpeg
from joyvl_agent.tools import (
    ENTRY_POINT_GROUP,
    Artifact,
    DelegationFrame,
    DelegationRequest,
    DelegationResult,
    DelegationTarget,
    FunctionTarget,
    ToolRegistry,
    _registry,
    delegation_tool,
    langchain_tool,
    openai_model,
    sanitize_tool_name,
    webhook,
)
from tests.fakes.openai_server import FakeOpenAIServer

from .fakes.targets import RecordingProgress, make_request

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent


def frame(t: float, side: int = 32) -> DelegationFrame:
    rgb = np.full((side, side, 3), int(t * 20) % 255, np.uint8)
    img = encode_jpeg(rgb, frame_t=t)
    return DelegationFrame(jpeg=img.jpeg, t=t, width=img.width, height=img.height)


def request(question: str = "What is on the card?", *, frames: int = 0, **kw) -> DelegationRequest:
    return make_request(question, [frame(float(i)) for i in range(frames)],
                        task_id="task-1", **kw)


Progress = RecordingProgress


# --- public surface -------------------------------------------------------------------------


def test_public_names_are_exported_and_sorted():
    public = {n for n, v in vars(tools_pkg).items()
              if not n.startswith("_") and not isinstance(v, type(sys)) and n != "annotations"}
    assert set(tools_pkg.__all__) == public
    assert len(tools_pkg.__all__) == len(set(tools_pkg.__all__))
    for name in ("DelegationRequest", "DelegationResult", "Artifact", "DelegationFrame",
                 "DelegationTarget"):
        assert name in tools_pkg.__all__


def test_importing_the_wing_does_not_import_mcp_or_langchain():
    code = ("import sys, joyvl_agent.tools; "
            "print(','.join(m for m in ('mcp', 'langchain_core') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


# --- @delegation_tool -----------------------------------------------------------------------


async def test_sync_function_returning_str_runs_in_a_worker_thread():
    reg = ToolRegistry()
    seen: list[int] = []

    @delegation_tool(name="read_card", registry=reg)
    def read_card(req: DelegationRequest) -> str:
        """Reads the card.

        More detail that the router does not need.
        """
        seen.append(threading.get_ident())
        return f"  the card says 42 ({len(req.frames)} frames)  "

    assert read_card(request()).strip().startswith("the card")  # the function is unchanged
    target = reg["read_card"]
    assert isinstance(target, DelegationTarget)
    assert (target.description, target.side_effects, target.speak_result) == (
        "Reads the card.", False, False)
    result = await target.run(request(frames=2), Progress())
    assert result == DelegationResult(text="the card says 42 (2 frames)")
    assert seen[-1] != threading.get_ident()


async def test_async_function_with_progress_returning_a_result():
    reg = ToolRegistry()

    @delegation_tool(name="chart", description="Draws a chart", side_effects=True,
                     speak_result=True, registry=reg)
    async def chart(req: DelegationRequest, progress) -> DelegationResult:
        await progress("drawing", 1, 2)
        return DelegationResult(text="a chart", data={"bars": [1, 2]},
                                artifacts=[Artifact(mime="image/svg+xml", name="c.svg",
                                                    data=b"<svg/>")])

    progress = Progress()
    result = await reg["chart"].run(request(), progress)
    assert (result.text, result.data, result.artifacts[0].name) == ("a chart", {"bars": [1, 2]},
                                                                    "c.svg")
    assert progress.events == [("drawing", 1, 2)]
    assert reg.describe() == [{"name": "chart", "description": "Draws a chart",
                               "side_effects": True}]
    assert reg["chart"].speak_result is True


async def test_sync_progress_and_keyword_only_progress():
    reg = ToolRegistry()

    @delegation_tool(name="sync_steps", description="Steps", registry=reg)
    def sync_steps(req, progress):
        progress("one", 1, 2)
        progress("two")
        return "done"

    @delegation_tool(name="kw_steps", description="Steps", registry=reg)
    async def kw_steps(req, *, progress):
        await progress("kw", None, None)
        return "done"

    progress = Progress()
    assert (await reg["sync_steps"].run(request(), progress)).text == "done"
    assert (await reg["kw_steps"].run(request(), progress)).text == "done"
    assert progress.events == [("one", 1, 2), ("two", None, None), ("kw", None, None)]


def test_decorator_without_parentheses_says_how_to_fix_it():
    with pytest.raises(TypeError, match=r"@delegation_tool\(name=\.\.\."):
        @delegation_tool
        def oops(req):
            """Oops."""


@pytest.mark.parametrize("bad", ["Count", "count people", "x" * 65, "", "a/b", "é"])
def test_bad_names_are_refused(bad):
    with pytest.raises(ValueError, match="1-64 characters"):
        delegation_tool(name=bad, description="d", registry=ToolRegistry())(lambda r: "x")


def test_description_and_signature_are_checked():
    reg = ToolRegistry()
    with pytest.raises(ValueError, match="no description"):
        @delegation_tool(name="undocumented", registry=reg)
        def undocumented(req):
            return "x"

    with pytest.raises(TypeError, match="must take the request"):
        @delegation_tool(name="no_args", description="d", registry=reg)
        def no_args():
            return "x"

    @delegation_tool(registry=reg)
    def default_name(req):
        """Uses the function's name."""
        return "x"

    assert reg.names() == ["default_name"]


@pytest.mark.parametrize(("value", "match"), [
    (None, "returned None"), ("   ", "empty answer"), (42, "returned int"),
])
async def test_bad_return_values_are_delegation_errors(value, match):
    target = FunctionTarget(lambda req: value, name="bad", description="d")
    with pytest.raises(DelegationError, match=match) as err:
        await target.run(request(), Progress())
    assert err.value.hint


async def test_long_answers_are_clipped_and_cancellation_propagates():
    long = FunctionTarget(lambda req: "x" * (MAX_RESULT_CHARS + 500), name="long",
                          description="d")
    text = (await long.run(request(), Progress())).text
    assert len(text) <= MAX_RESULT_CHARS and text.endswith("more characters]")

    started = asyncio.Event()

    async def forever(req):
        started.set()
        await asyncio.sleep(60)

    task = asyncio.create_task(FunctionTarget(forever, name="slow", description="d")
                               .run(request(), Progress()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


# --- registry ---------------------------------------------------------------------------------


def test_registry_mapping_duplicates_and_describe(caplog):
    reg = ToolRegistry()
    first = reg.add(lambda req: "a", name="echo", description="First echo")
    assert reg.add(first) is first  # the same target again: no warning
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="joyvl_agent.tools"):
        second = reg.add(lambda req: "b", name="echo", description="Second echo")
    assert "registered again" in caplog.text and "'echo'" in caplog.text
    assert reg["echo"] is second and len(reg) == 1 and "echo" in reg
    reg.add(FunctionTarget(lambda req: "c", name="zeta", description="Z", side_effects=True))
    assert reg.names() == ["echo", "zeta"] and list(reg) == ["echo", "zeta"]
    assert reg.describe() == [
        {"name": "echo", "description": "Second echo", "side_effects": False},
        {"name": "zeta", "description": "Z", "side_effects": True},
    ]
    assert reg.get("nope") is None
    with pytest.raises(KeyError, match="registered: echo, zeta"):
        reg["nope"]
    with pytest.raises(TypeError, match="not a delegation target"):
        reg.add(42)
    with pytest.raises(TypeError, match="already a target"):
        reg.add(second, name="other")
    assert reg.remove("zeta").name == "zeta" and reg.names() == ["echo"]


PLUGIN = '''
from joyvl_agent.tools import DelegationResult, FunctionTarget, delegation_tool

@delegation_tool(name="plugin.weather", description="Weather at the camera")
def weather(request):
    return "sunny"

SHOUT = FunctionTarget(lambda r: r.question.upper(), name="plugin.shout", description="Shouts")

class EchoTarget:
    name = "plugin.echo"
    description = "Echoes"
    side_effects = False
    speak_result = False

    async def run(self, request, progress):
        return DelegationResult(text=request.question)

def make_targets():
    return [FunctionTarget(lambda r: "one", name="plugin.one", description="One"), weather]

def explode():
    raise RuntimeError("plugin factory exploded")

NOT_A_TARGET = 42
'''

ENTRY_POINTS = f"""[{ENTRY_POINT_GROUP}]
decorated = joyvl_fake_plugin:weather
target = joyvl_fake_plugin:SHOUT
klass = joyvl_fake_plugin:EchoTarget
factory = joyvl_fake_plugin:make_targets
broken_import = joyvl_missing_plugin:thing
broken_factory = joyvl_fake_plugin:explode
bad_object = joyvl_fake_plugin:NOT_A_TARGET

[some.other.group]
ignored = joyvl_fake_plugin:SHOUT
"""


@pytest.fixture
def fake_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An installed distribution on sys.path with entry points in its .dist-info."""
    (tmp_path / "joyvl_fake_plugin.py").write_text(PLUGIN)
    info = tmp_path / "joyvl_fake_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: joyvl-fake-plugin\n"
                                   "Version: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    # the plugin's module-level @delegation_tool goes to a throwaway default registry
    monkeypatch.setattr(_registry, "registry", ToolRegistry())
    yield
    sys.modules.pop("joyvl_fake_plugin", None)


async def test_entry_points_load_lazily_and_failures_are_logged(fake_plugin, caplog):
    reg = ToolRegistry()
    assert "joyvl_fake_plugin" not in sys.modules  # nothing happens before the call
    with caplog.at_level(logging.WARNING, logger="joyvl_agent.tools"):
        added = reg.load_entry_points()
    assert sorted(added) == ["plugin.echo", "plugin.one", "plugin.shout", "plugin.weather",
                             "plugin.weather"]
    assert sorted(reg.names()) == ["plugin.echo", "plugin.one", "plugin.shout",
                                   "plugin.weather"]
    for name in ("broken_import", "broken_factory", "bad_object"):
        assert f"entry point '{name}'" in caplog.text
    assert "plugin factory exploded" in caplog.text
    assert (await reg["plugin.shout"].run(request("hi"), Progress())).text == "HI"
    assert (await reg["plugin.echo"].run(request("echo"), Progress())).text == "echo"
    assert (await reg["plugin.weather"].run(request(), Progress())).text == "sunny"
    assert reg.load_entry_points() == []  # each entry point is loaded once per registry


def test_entry_points_into_the_default_registry_do_not_warn_twice(fake_plugin, caplog):
    default = _registry.registry
    with caplog.at_level(logging.WARNING, logger="joyvl_agent.tools"):
        default.load_entry_points()
    assert "registered again" not in caplog.text
    assert "plugin.weather" in default


# --- LangChain ------------------------------------------------------------------------------


@tool
def lookup(question: str, note: str | None = None, frames: list[str] | None = None) -> str:
    """Looks facts up."""
    return f"answer to {question!r} (note={note}, frames={len(frames or [])})"


@tool
async def shout(words: str) -> str:
    """Shouts the words."""
    return words.upper()


@tool(response_format="content_and_artifact")
def chart(query: str) -> tuple[str, dict[str, Any]]:
    """Makes a chart spec."""
    return f"a chart of {query}", {"mark": "bar"}


@tool
def failing(question: str) -> str:
    """Always fails."""
    raise ToolException("the index is offline")


@tool
def add(a: int, b: int) -> int:
    """Adds."""
    return a + b


async def test_langchain_tools_get_the_question_and_frames():
    target = langchain_tool(lookup)
    assert (target.name, target.description, target.side_effects) == (
        "lookup", "Looks facts up.", False)
    result = await target.run(request(frames=3, note="left side"), Progress())
    assert result.text == "answer to 'What is on the card?' (note=left side, frames=3)"

    loud = langchain_tool(shout, name="loud", speak_result=True)
    assert (await loud.run(request("hello"), Progress())).text == "HELLO"
    assert loud.name == "loud" and loud.speak_result

    charted = await langchain_tool(chart).run(request("sales"), Progress())
    assert (charted.text, charted.data) == ("a chart of sales", {"mark": "bar"})


async def test_langchain_errors_become_delegation_errors():
    with pytest.raises(DelegationError, match="the index is offline"):
        await langchain_tool(failing).run(request(), Progress())
    failing_handled = failing.model_copy(update={"handle_tool_error": True})
    with pytest.raises(DelegationError, match="the index is offline"):
        await langchain_tool(failing_handled).run(request(), Progress())
    with pytest.raises(DelegationError, match="arguments are a, b") as err:
        await langchain_tool(add).run(request(), Progress())
    assert "question" in (err.value.hint or "")
    with pytest.raises(TypeError, match="BaseTool"):
        langchain_tool(lambda q: q)


async def test_langchain_tool_message_with_image_blocks():
    png = base64.b64encode(b"\x89PNG fake").decode()

    @tool
    def picture(question: str) -> ToolMessage:
        """Returns a ready-made message."""
        return ToolMessage(content=[{"type": "text", "text": "here"},
                                    {"type": "image", "base64": png, "mime_type": "image/png"}],
                           tool_call_id="x")

    result = await langchain_tool(picture).run(request(), Progress())
    assert result.text == "here"
    assert [(a.mime, a.data) for a in result.artifacts] == [("image/png", b"\x89PNG fake")]


# --- OpenAI-compatible background model --------------------------------------------------


async def test_openai_model_sends_frames_as_images_and_returns_the_answer():
    def respond(body: dict[str, Any]) -> str:
        content = body["messages"][1]["content"]
        images = [p for p in content if p["type"] == "image_url"]
        return f"I see {len(images)} frames; the card says 7"

    with FakeOpenAIServer(responder=respond) as srv:
        target = openai_model(srv.base_url, max_frames=4)
        assert (target.name, target.side_effects) == ("background_model", False)
        progress = Progress()
        result = await target.run(
            request("What does the card say?", frames=6, note="small print", task="read cards",
                    recent_speech=["A card appeared."]), progress)
    assert result.text == "I see 4 frames; the card says 7"
    assert result.data["model"] == "fake-vl" and result.data["frames_sent"] == 4
    assert progress.events == [("asking fake-vl with 4 frame(s)", None, None)]
    body = srv.requests[-1]
    assert body["model"] == "fake-vl"
    system, user = body["messages"]
    assert system["role"] == "system"
    urls = [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]
    assert len(urls) == 4
    sent = [base64.b64decode(u.split(",", 1)[1]) for u in urls]
    expected = [f.jpeg for f in request(frames=6).frames[-4:]]
    assert sent == expected  # the 4 most recent frames, oldest first, as real JPEGs
    stamps = [p["text"] for p in user["content"] if p["type"] == "text"]
    assert stamps[:4] == ["Frame at 2.0 s:", "Frame at 3.0 s:", "Frame at 4.0 s:",
                          "Frame at 5.0 s:"]
    prompt = stamps[-1]
    for part in ("Standing task: read cards", "note: small print", "A card appeared.",
                 "Question: What does the card say?"):
        assert part in prompt


async def test_openai_model_errors_are_clear():
    with FakeOpenAIServer() as srv:
        target = openai_model(srv.base_url, model="fake-vl")
        srv.fail_next = [(503, "overloaded")]
        with pytest.raises(DelegationError, match="HTTP 503: overloaded") as err:
            await target.run(request(), Progress())
        assert err.value.retryable
        srv.fail_next = [(0, "<html>nope</html>")]
        with pytest.raises(DelegationError, match="not JSON"):
            await target.run(request(), Progress())
        srv.replies.append("   ")
        with pytest.raises(DelegationError, match="empty answer"):
            await target.run(request(), Progress())
        srv.latency_s = 1.0
        with pytest.raises(DelegationError, match=r"did not answer within 0\.2 s") as err:
            await openai_model(srv.base_url, model="m", timeout=0.2).run(request(), Progress())
        assert err.value.retryable
    with pytest.raises(DelegationError, match="cannot reach"):
        await openai_model("http://127.0.0.1:9/v1", model="m").run(request(), Progress())
    with pytest.raises(ValueError, match="http://"):
        openai_model("127.0.0.1:8000/v1")


async def test_openai_model_api_key_and_content_parts_through_a_mock_transport():
    seen: list[httpx.Request] = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append(req)
        if req.url.path.endswith("/models"):
            return httpx.Response(200, json={"data": [{"id": "served-model"}]})
        if req.headers.get("authorization") != "Bearer sk-test":
            return httpx.Response(401, json={"error": {"message": "bad key"}})
        parts = [{"type": "text", "text": "two "}, {"type": "text", "text": "cats"}]
        return httpx.Response(200, json={"choices": [{"message": {"content": parts}}]})

    target = openai_model("https://api.example/v1", api_key="sk-test",
                          transport=httpx.MockTransport(handler))
    assert (await target.run(request(), Progress())).text == "two cats"
    assert json.loads(seen[-1].content)["model"] == "served-model"
    wrong = openai_model("https://api.example/v1", model="m", api_key="nope",
                         transport=httpx.MockTransport(handler))
    with pytest.raises(DelegationError, match="HTTP 401: bad key") as err:
        await wrong.run(request(), Progress())
    assert "API key" in (err.value.hint or "")


# --- webhook --------------------------------------------------------------------------------


class WebhookServer:
    """A loopback HTTP server that records posts and answers by path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], dict[str, Any]]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hook.posts.append((self.path, dict(self.headers), body))
                status, answer = hook.answer(self.path, body)
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/ok":
            png = base64.b64encode(b"PNGDATA").decode()
            return 200, {"text": f"{len(body['frames'])} frames for {body['question']}",
                         "data": {"count": 2},
                         "artifacts": [{"mime": "image/png", "name": "crop.png", "data": png}]}
        if path == "/no-text":
            return 200, {"answer": "where is text?"}
        if path == "/down":
            return 503, {"detail": "maintenance"}
        return 200, b"plain words"

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def __enter__(self) -> WebhookServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


async def test_webhook_posts_the_request_and_reads_the_answer():
    with WebhookServer() as srv:
        target = webhook(srv.url("/ok"), name="ops_hook", headers={"X-Token": "secret"},
                         description="Opens a ticket")
        assert target.side_effects is True  # a webhook may act: explicit enabling needed
        req = request("Is the door open?", frames=3, note="front door")
        result = await target.run(req, Progress())
        assert result.text == "3 frames for Is the door open?"
        assert result.data == {"count": 2}
        assert [(a.mime, a.name, a.data) for a in result.artifacts] == [
            ("image/png", "crop.png", b"PNGDATA")]
        path, headers, body = srv.posts[-1]
        assert headers["X-Token"] == "secret"
        assert (body["target"], body["task_id"], body["note"]) == ("ops_hook", "task-1",
                                                                   "front door")
        assert [base64.b64decode(f["jpeg"]) for f in body["frames"]] == [f.jpeg for f in req.frames]
        assert [f["t"] for f in body["frames"]] == [0.0, 1.0, 2.0]

        with pytest.raises(DelegationError, match="without a text field"):
            await webhook(srv.url("/no-text")).run(req, Progress())
        with pytest.raises(DelegationError, match="HTTP 503: maintenance") as err:
            await webhook(srv.url("/down")).run(req, Progress())
        assert err.value.retryable
        with pytest.raises(DelegationError, match="not JSON"):
            await webhook(srv.url("/plain")).run(req, Progress())
        few = webhook(srv.url("/ok"), max_frames=1, side_effects=False)
        assert (await few.run(req, Progress())).text.startswith("1 frames")
        assert srv.posts[-1][2]["frames"][0]["t"] == 2.0


# --- names and the example ----------------------------------------------------------------


def test_sanitized_names_match_the_pattern():
    assert sanitize_tool_name("MCP.Files/Read File") == "mcp.files_read_file"
    assert sanitize_tool_name("!!!") == "tool"
    a, b = sanitize_tool_name("a" * 70 + "x"), sanitize_tool_name("a" * 70 + "y")
    assert len(a) == len(b) == 64 and a != b


def test_custom_delegation_tool_example_runs_offline():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_delegation_tool.py")],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "registered: colour_census: Says which vivid colours are on screen"
    assert sum(line.startswith("progress: measured frame") for line in lines) == 3
    answer = next(line for line in lines if line.startswith("answer: "))
    assert "blue" in answer and "green" in answer  # the square and the circle on screen
    data = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
    assert data["t"] == 3.0 and data["coverage"]["blue"] > data["coverage"]["green"] > 0.03
