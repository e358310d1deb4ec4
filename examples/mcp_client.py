"""Follow a live joyvl session over MCP and print what the assistant says.

    # a running `joyvl serve` (streamable HTTP)
    python examples/mcp_client.py http://127.0.0.1:8765/mcp [--token TOKEN]

    # no server at hand: spawn one over stdio on a generated clip, with the oracle
    # (ground truth of the clip standing in for a model; this is what `joyvl mcp` runs)
    python examples/mcp_client.py

It follows the event log with the `poll_events` long-poll, passing the returned cursor back
each time, and prints every `speech` event. It stops after `--max-seconds`, or once the
session's source has ended.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def stdio_server(workdir: Path, task: str) -> StdioServerParameters:
    """Generate a short synthetic clip and the command that serves it over stdio."""
    from joyvl_agent.synth import generate

    clip = workdir / "appear.mp4"
    generate("appear", clip, seed=1, size=(320, 180), duration=6)
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "joyvl_agent.mcp_server", str(clip), "--model", "oracle",
              "--db", str(workdir / "joyvl.db"), "--task", task],
        cwd=str(workdir))


async def follow(target: object, *, max_seconds: float, task: str | None) -> int:
    """Print what the assistant says until `max_seconds` pass or the source ends."""
    started = time.monotonic()
    said = 0
    async with Client(target) as client:  # type: ignore[arg-type]
        status = (await client.call_tool("session_status")).structured_content
        print(f"following session {status['session_id']} ({status['source']}, "
              f"model {status['model']})", flush=True)
        if task:
            await client.call_tool("set_task", {"instruction": task})
        cursor = 0
        while (left := max_seconds - (time.monotonic() - started)) > 0:
            result = await client.call_tool("poll_events", {
                "cursor": cursor, "kinds": ["speech", "session_ended"],
                "wait_seconds": max(0.0, min(5.0, left))})
            if result.is_error:
                raise SystemExit(" ".join(getattr(b, "text", "") for b in result.content))
            page = result.structured_content
            if page["behind_retention"]:
                print("(some events were already deleted by retention)", flush=True)
            for event in page["events"]:
                if event["kind"] == "speech":
                    said += 1
                    print(f"{event['t']:7.1f}s  {event['text']}", flush=True)
                else:
                    print(f"{event['t']:7.1f}s  (session ended: {event['reason']})", flush=True)
                    return said
            cursor = page["cursor"]
            if not page["events"]:
                status = (await client.call_tool("session_status")).structured_content
                if status["state"] == "stopped":
                    print("(the source has ended)", flush=True)
                    break
    return said


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", help="MCP endpoint of `joyvl serve` (default: spawn "
                                               "a stdio server on a generated clip)")
    parser.add_argument("--token", help="Bearer token for the HTTP endpoint")
    parser.add_argument("--task", help="Set this standing instruction first (needs full scope)")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="Stop after this long")
    args = parser.parse_args()

    async def run() -> int:
        if args.url:
            headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
            async with httpx2.AsyncClient(headers=headers,
                                          timeout=httpx2.Timeout(30, read=300)) as http:
                return await follow(streamable_http_client(args.url, http_client=http),
                                    max_seconds=args.max_seconds, task=args.task)
        with tempfile.TemporaryDirectory() as tmp:
            server = stdio_server(Path(tmp), args.task or "Tell me when something appears")
            return await follow(server, max_seconds=args.max_seconds, task=None)

    said = anyio.run(run)
    print(f"{said} line(s) said", flush=True)


if __name__ == "__main__":
    main()
