"""The traffic endpoints behind ``plait stat`` and ``plait tap`` (``plait top`` is built on tap).

Theory of operation: the registry lists every sidecar with where its admin
listener is (``check()`` rows: ``node``, ``workload``, ``sidecar``, ``admin``,
``connected``); the stored Workloads say which Service each instance serves.
:func:`targets` groups the connected sidecars by what the request names:
``workload`` (the default), ``service`` or ``sidecar`` (the Sidecar resource
they run), all of a kind or one by name.

``GET /api/v1/stat?kind=K&name=N&window=S`` reads every chosen sidecar's
``/metrics`` (concurrently), says ``{"started": ...}`` (the window runs from
here), reads them again ``S`` seconds later together with each one's listeners
(``/config_dump``: which are inbound, which outbound), and answers
``{"stat": [ROW...], "errors": [...]}``: one row per group and direction with the
numbers of ``_stat.summarize``. Both answers are lines of one streamed response, so
a client knows when its window began.

``GET /api/v1/tap?kind=K&name=N&path=P&status=S&max=M&duration=D`` opens the
sidecar's ``/tap`` on every chosen sidecar and merges their JSON lines, each record
tagged with its ``workload``; it says ``{"started": true}`` once every sidecar has,
and ends after ``max`` records or ``duration`` seconds, or when the client leaves.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import anyio

from plait.controlplane.store import Store

from ._http import HttpError, Request, Response, Send, Streaming
from ._registry_view import RegistryView
from ._sidecar_admin import AdminError, copy_lines, fetch
from ._stat import Counts, delta, parse_metrics, summarize

__all__ = ["KINDS", "TrafficEndpoints"]

KINDS = ("workload", "service", "sidecar")
_MAX_WINDOW = 3600.0


@dataclass(frozen=True, slots=True)
class Target:
    group: str
    node: str
    admin: str


def _seconds(req: Request, name: str, default: float, limit: float) -> float:
    raw = req.query.get(name, "")
    try:
        value = float(raw) if raw else default
    except ValueError:
        value = math.nan
    if not 0 <= value <= limit:
        raise HttpError(400, f"{name}={raw!r}: expected seconds between 0 and {limit:g}")
    return value


class TrafficEndpoints:
    def __init__(self, store: Store, registry: Callable[[], RegistryView | None]) -> None:
        self.store = store
        self.registry = registry

    async def targets(self, req: Request) -> list[Target]:
        kind = req.query.get("kind", "workload") or "workload"
        if kind not in KINDS:
            raise HttpError(400, f"kind {kind!r}: expected one of {', '.join(KINDS)}")
        name = req.query.get("name", "")
        registry = self.registry()
        rows = registry.check() if registry is not None else []
        services = {}
        if kind == "service":
            for r in await self.store.list(kind="Workload"):
                spec = r.document.get("spec")
                if isinstance(spec, Mapping):
                    services[str(r.key)] = str(spec.get("service", ""))
        found = []
        for row in rows:
            if not row.get("connected") or not row.get("admin") or not row.get("node"):
                continue
            workload = str(row.get("workload") or "")
            if kind == "workload":
                group = workload.rsplit("/", 1)[-1] if workload else str(row["node"])
            elif kind == "service":
                group = services.get(workload, "")
            else:
                group = str(row.get("sidecar") or "").split(".", 1)[0]
            if group and (not name or group == name):
                found.append(Target(group, str(row["node"]), str(row["admin"])))
        if name and not found:
            raise HttpError(404, f"no connected sidecar serves {kind} {name!r} "
                            "(see plait get workloads)")  # fmt: skip
        return found

    async def stat(self, req: Request) -> Response:
        window = _seconds(req, "window", 10.0, _MAX_WINDOW)
        chosen = await self.targets(req)

        async def run(send: Send) -> None:
            errors: list[str] = []
            start = await _scrape(chosen, errors, with_listeners=False)
            began = time.time()
            await _line(send, {"started": began, "window": window, "sidecars": len(chosen)})
            await anyio.sleep(window)
            answered = [t for t in chosen if t.node in start]  # the others are in errors
            end = await _scrape(answered, errors, with_listeners=True)
            seconds = time.time() - began
            groups: dict[tuple[str, str], list[Counts]] = {}
            for t in chosen:
                if t.node not in start or t.node not in end:
                    continue
                counts, directions = end[t.node]
                for listener, part in delta(start[t.node][0], counts).items():
                    direction = directions.get(listener, "inbound")
                    groups.setdefault((t.group, direction), []).append(part)
                for direction in directions.values():  # listeners without traffic
                    groups.setdefault((t.group, direction), [])
            rows = [
                {"kind": req.query.get("kind") or "workload", "name": group,
                 "direction": direction, "window_s": round(seconds, 3),
                 "sidecars": len({t.node for t in chosen if t.group == group and t.node in end}),
                 **summarize(parts, seconds)}
                for (group, direction), parts in sorted(groups.items())
            ]  # fmt: skip
            await _line(send, {"stat": rows, "errors": errors})

        return Response(status=200, body=Streaming(run))

    async def tap(self, req: Request) -> Response:
        chosen = await self.targets(req)
        duration = _seconds(req, "duration", 0.0, math.inf)
        limit_raw = req.query.get("max", "0") or "0"
        if not limit_raw.isdigit():
            raise HttpError(400, f"max={limit_raw!r}: expected a whole number of records")
        limit = int(limit_raw)
        query = urlencode({k: req.query[k] for k in ("path", "status") if req.query.get(k)})
        target = "/tap" + (f"?{query}" if query else "")

        async def run(send: Send) -> None:
            merged_in, merged_out = anyio.create_memory_object_stream[bytes](1000)
            started = sent = 0
            with anyio.move_on_after(duration or math.inf):
                async with anyio.create_task_group() as tg, merged_out:
                    async with merged_in:
                        for t in chosen:
                            tg.start_soon(_follow, t, target, merged_in.clone())
                    async for line in merged_out:
                        if line.startswith(b'{"started"'):
                            started += 1
                            if started == len(chosen):
                                await send(line)
                            continue
                        await send(line)
                        if b'"dropped"' not in line[:12] and b'"error"' not in line[:10]:
                            sent += 1
                            if limit and sent >= limit:
                                break
                    tg.cancel_scope.cancel()

        return Response(status=200, body=Streaming(run))


async def _line(send: Send, data: Mapping[str, Any]) -> None:
    await send(json.dumps(data, separators=(",", ":")).encode() + b"\n")


async def _follow(t: Target, target: str, out: Any) -> None:
    async def one(line: bytes) -> None:
        if line.startswith(b'{"started"') or line.startswith(b'{"dropped"'):
            await out.send(line + b"\n")
            return
        record = json.loads(line)
        record["workload"], record["node"] = t.group, t.node
        await out.send(json.dumps(record, separators=(",", ":")).encode() + b"\n")

    async with out:
        try:
            await copy_lines(t.admin, target, one)
        except AdminError as exc:
            await out.send(json.dumps({"error": str(exc), "node": t.node}).encode() + b"\n")
            await out.send(b'{"started":true}\n')  # not waited for any longer


async def _scrape(
    chosen: Sequence[Target], errors: list[str], *, with_listeners: bool
) -> dict[str, tuple[dict[str, Counts], dict[str, str]]]:
    """node → (its counts, listener → direction) for every sidecar that answered."""
    out: dict[str, tuple[dict[str, Counts], dict[str, str]]] = {}

    async def one(t: Target) -> None:
        try:
            counts = parse_metrics((await fetch(t.admin, "/metrics")).decode())
            directions: dict[str, str] = {}
            if with_listeners:
                dump = json.loads(await fetch(t.admin, "/config_dump"))
                for lis in dump.get("config", {}).get("listeners", []):
                    directions[str(lis.get("name"))] = str(lis.get("direction", "inbound"))
        except (AdminError, ValueError) as exc:
            errors.append(f"{t.node}: {exc}")
            return
        out[t.node] = (counts, directions)

    async with anyio.create_task_group() as tg:
        for t in chosen:
            tg.start_soon(one, t)
    return out
