"""TCP health checks of endpoints, as Envoy's TCP health check does them.

:class:`HealthChecks` probes a set of ``(host, port)`` per round (concurrently, 1 s each: a
connection accepted in time passes) and keeps, per endpoint, the failures in a row:
``unhealthy_after`` of them make it unhealthy, one pass makes it healthy again. Endpoints no
longer probed are forgotten. The registry runs the rounds and decides what to probe.
"""

from __future__ import annotations

import anyio

__all__ = ["HealthChecks"]


class HealthChecks:
    def __init__(self, unhealthy_after: int = 3, timeout: float = 1.0) -> None:
        self.unhealthy_after = unhealthy_after
        self.timeout = timeout
        self.unhealthy: frozenset[str] = frozenset()
        """``host:port`` of the endpoints that failed ``unhealthy_after`` rounds in a row."""
        self._failures: dict[str, int] = {}

    async def round(self, targets: set[tuple[str, int]]) -> bool:
        """Probe every target once; True if the unhealthy set changed."""
        results: dict[str, bool] = {}
        async with anyio.create_task_group() as tg:
            for host, port in targets:
                tg.start_soon(self._probe, host, port, results)
        for key, ok in results.items():
            self._failures[key] = 0 if ok else self._failures.get(key, 0) + 1
        live = {f"{h}:{p}" for h, p in targets}
        self._failures = {k: v for k, v in self._failures.items() if k in live}
        bad = frozenset(k for k, n in self._failures.items() if n >= self.unhealthy_after)
        changed = bad != self.unhealthy
        self.unhealthy = bad
        return changed

    async def _probe(self, host: str, port: int, results: dict[str, bool]) -> None:
        ok = False
        with anyio.move_on_after(self.timeout):
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                pass
            else:
                await stream.aclose()
                ok = True
        results[f"{host}:{port}"] = ok
