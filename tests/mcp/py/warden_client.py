"""Drives Warden's MCP server with the official MCP Python SDK (`mcp` 2.x), for tests/mcp.

    python warden_client.py SCENARIO 'JSON ARGS'

ARGS says how to connect: {"transport": "stdio", "command": ..., "args": [...], "cwd": ...}
or {"transport": "http", "url": ..., "token": ...}; "mode" is the SDK's handshake mode
("auto": server/discover, falling back to initialize; "legacy": initialize), and "session",
when given, resumes that Warden session (stdio: `--session ID`; HTTP: `?session=ID`).

The script only observes: it prints one JSON object, what the client saw, as its last stdout
line, and the Rust tests assert on it. It exits 1 (with the traceback) when the client itself
fails, e.g. on a protocol error where a tool result was expected.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import asynccontextmanager
from typing import Any

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


@asynccontextmanager
async def connect(args: dict[str, Any], session: str | None = None):
    """A connected `Client` as ARGS says, resuming `session` when given."""
    mode = args["mode"]
    if args["transport"] == "stdio":
        argv = list(args["args"])
        if session:
            argv += ["--session", session]
        params = StdioServerParameters(
            command=args["command"], args=argv, env=args.get("env"), cwd=args.get("cwd")
        )
        async with Client(params, mode=mode, read_timeout_seconds=90) as client:
            yield client
        return
    url = args["url"]
    if session:
        url += ("&" if "?" in url else "?") + "session=" + session
    http = create_mcp_http_client(headers={"Authorization": "Bearer " + args["token"]})
    async with http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, read_timeout_seconds=90) as client:
            yield client


def summary(result: Any) -> dict[str, Any]:
    """A tool result as plain JSON: isError, content, structuredContent, _meta."""
    return {
        "isError": bool(result.is_error),
        "content": [c.model_dump(by_alias=True, mode="json", exclude_none=True) for c in result.content],
        "structuredContent": result.structured_content,
        "_meta": result.meta,
    }


async def tour(args: dict[str, Any]) -> dict[str, Any]:
    """One connection: list, echo, a denied call, a timed-out call with progress, memory."""
    out: dict[str, Any] = {}
    async with connect(args, args.get("session")) as client:
        out["protocol_version"] = client.protocol_version
        listed = await client.list_tools()
        out["tools"] = [t.model_dump(by_alias=True, mode="json", exclude_none=True) for t in listed.tools]
        out["echo"] = summary(await client.call_tool("text-tools__echo", {"text": args["text"]}))
        out["denied"] = summary(
            await client.call_tool("sql__query", {"source": "crm", "sql": "SELECT name FROM customers"})
        )
        progress: list[dict[str, Any]] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append({"progress": value, "total": total, "message": message})

        started = time.monotonic()
        out["timed_out"] = summary(await client.call_tool("spin-forever__spin", {}, progress_callback=on_progress))
        out["timed_out_ms"] = (time.monotonic() - started) * 1000
        out["progress"] = progress
        out["put"] = summary(
            await client.call_tool(
                "memory-probe__put", {"ns": "session", "key": args["key"], "value": args["value"]}
            )
        )
        out["get"] = summary(await client.call_tool("memory-probe__get", {"ns": "session", "key": args["key"]}))
    return out


async def get(args: dict[str, Any]) -> dict[str, Any]:
    """A new connection resuming ARGS' session: reads the key back."""
    async with connect(args, args["session"]) as client:
        result = await client.call_tool("memory-probe__get", {"ns": "session", "key": args["key"]})
        return {"protocol_version": client.protocol_version, "get": summary(result)}


async def echoes(args: dict[str, Any]) -> dict[str, Any]:
    """Two echo calls on one connection (which Warden sessions do they run in?)."""
    async with connect(args, args.get("session")) as client:
        first = await client.call_tool("text-tools__echo", {"text": "one"})
        second = await client.call_tool("text-tools__echo", {"text": "two"})
        return {"protocol_version": client.protocol_version, "calls": [summary(first), summary(second)]}


async def cancel(args: dict[str, Any]) -> dict[str, Any]:
    """Starts the spinner (a long time limit), gives up on it after `after_ms`, which makes the
    SDK send notifications/cancelled (or drop the request's stream), then times an echo."""
    out: dict[str, Any] = {}
    async with connect(args, args.get("session")) as client:
        out["protocol_version"] = client.protocol_version
        # One echo first, so the session and the plugins are warm before the timing.
        warm = await client.call_tool("text-tools__echo", {"text": "warm"})
        out["session"] = (warm.meta or {}).get("warden/session")
        finished = None
        started = time.monotonic()
        with anyio.move_on_after(args["after_ms"] / 1000) as scope:
            finished = summary(await client.call_tool("spin-forever__spin", {}))
        out["spin_cancelled_by_client"] = scope.cancelled_caught
        out["spin_result"] = finished
        begun = time.monotonic()
        echo = await client.call_tool("text-tools__echo", {"text": args["text"]})
        out["echo_ms"] = (time.monotonic() - begun) * 1000
        out["total_ms"] = (time.monotonic() - started) * 1000
        out["echo"] = summary(echo)
    return out


SCENARIOS = {"tour": tour, "get": get, "echoes": echoes, "cancel": cancel}


def main() -> None:
    scenario, raw = sys.argv[1], sys.argv[2]
    args = json.loads(raw)
    result = anyio.run(SCENARIOS[scenario], args)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
