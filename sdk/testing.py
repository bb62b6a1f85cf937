"""Test a filter with no proxy and no sockets.

* :func:`make_context` / :func:`make_request`: a :class:`StreamContext` as the
  proxy would hand it to a filter.
* :func:`drive`: run one filter instance through one exchange, calling its
  hooks in contract order (request headers → data → trailers, response
  headers → data → trailers, then ``on_stream_complete`` exactly once, also
  when a hook raises) and acting on the results as the chain does:
  ``LocalReply`` stops the exchange, ``Buffer`` holds the body and calls the
  data hook again with the whole of it, ``Continue(data=...)`` rewrites a chunk.
  Sync and ``async`` hooks both work.
* :func:`drive_tries`: run an upstream layer's ``before_try`` / ``after_try`` around
  scripted tries (statuses, responses or errors), following its ``TryAgain``s; the
  backoffs are recorded, not slept (``_tries_kit.py``).
* :func:`check_filter`: a conformance check for a :class:`FilterSpec` (config
  parses, hook names are known, hooks accept the contract's arguments and
  return valid results, ``stream_independent`` instances keep no state).

A result that breaks the contract raises :class:`FilterContractError`.
This module imports nothing from plait outside ``plait.sdk``.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._context import ConnectionContext, RequestHead, ResponseHead, StreamContext
from ._filter import HOOK_NAMES, FilterSpec
from ._headers import Headers
from ._hooks import HttpFilter
from ._policy import Pending
from ._results import Buffer, Continue, LocalReply
from ._tries_kit import Answer, TriesResult, drive_tries

__all__ = [
    "HOOK_NAMES",
    "Answer",
    "DriveResult",
    "FilterContractError",
    "TriesResult",
    "check_filter",
    "check_filter_async",
    "drive",
    "drive_tries",
    "make_context",
    "make_request",
]

_DATA_HOOKS = ("on_request_data", "on_response_data")
_BUFFER_HOOKS = ("on_request_headers", "on_response_headers", *_DATA_HOOKS)
_POLICY = ("before_try", "after_try")  # sdk/_policy.py
_PREFIXES = ("on_", "before_", "after_", "around_")


class FilterContractError(AssertionError):
    """A filter broke the hook contract (sdk/_filter.py, sdk/_results.py)."""


def make_request(
    method: str = "GET",
    path: str = "/",
    headers: Sequence[tuple[str | bytes, str | bytes]] = (),
    *,
    authority: str = "test.local",
) -> RequestHead:
    """A request head, as the codec makes one."""
    return RequestHead(method=method, path=path, authority=authority, headers=Headers(headers))


def make_context(request: RequestHead | None = None, **kw: Any) -> StreamContext:
    """A stream context on a fake loopback connection.

    Args:
        request: the request head (default ``GET /``).
        kw: any other :class:`StreamContext` field (``cluster=``, ``connection=``, ...).
    """
    kw.setdefault(
        "connection",
        ConnectionContext(
            peer_address=("127.0.0.1", 40000), local_address=("127.0.0.1", 15001), listener="test"
        ),
    )
    init = {k: kw.pop(k) for k in ("connection", "stream_id", "snapshot_version") if k in kw}
    ctx = StreamContext(request=request or make_request(), **init)
    for name, value in kw.items():  # cluster=, route_name=, response=, ...
        if name.startswith("_") or not hasattr(ctx, name):
            raise TypeError(f"make_context() got an unexpected keyword argument {name!r}")
        setattr(ctx, name, value)
    return ctx


@dataclass(slots=True, kw_only=True)
class DriveResult:
    """What happened when a filter was driven through one exchange."""

    ctx: StreamContext
    calls: list[str] = field(default_factory=list)
    """Hook names in the order they were called."""
    local_reply: LocalReply | None = None
    reply_phase: str | None = None
    """``"request"`` or ``"response"``: where the local reply came from. The drive ends
    at a local reply; in a sidecar, a reply given after the request head also passes
    through the filters' response hooks, this one's included (``core/exchange/replies.py``)."""
    upstream_called: bool = False
    """True when the whole request passed (the proxy would have called the upstream)."""
    request_body: bytes = b""
    """The request body as passed on upstream (after any ``Continue(data=...)``)."""
    response_body: bytes = b""

    @property
    def request_head(self) -> RequestHead:
        return self.ctx.request

    @property
    def response_head(self) -> ResponseHead | None:
        return self.ctx.response

    @property
    def status(self) -> int | None:
        """The status the client gets: the local reply's, else the response's."""
        if self.local_reply is not None:
            return self.local_reply.status
        return self.ctx.response.status if self.ctx.response else None


async def drive(
    filter_instance: object,
    *,
    request_head: RequestHead | None = None,
    request_body: bytes | Sequence[bytes] = b"",
    request_trailers: Headers | None = None,
    response_head: ResponseHead | None = None,
    response_body: bytes | Sequence[bytes] = b"",
    response_trailers: Headers | None = None,
    ctx: StreamContext | None = None,
) -> DriveResult:
    """Run ``filter_instance`` through one request/response exchange.

    Bodies are given whole (``bytes``) or as chunks (a list of ``bytes``).
    ``response_head`` defaults to an empty ``200``. ``on_stream_complete``
    runs exactly once, also when a hook raises (the exception propagates).

    Raises:
        FilterContractError: a hook returned something the contract forbids.
    """
    if ctx is None:
        ctx = make_context(request_head)
    elif request_head is not None:
        ctx.request = request_head
    result = DriveResult(ctx=ctx)
    try:
        body = await _phase(
            filter_instance,
            result,
            "request",
            headers=ctx.request.headers,
            chunks=_chunks(request_body),
            trailers=request_trailers,
        )
        if body is None:
            return result
        result.request_body = body
        result.upstream_called = True
        ctx.response = response_head or ResponseHead(status=200)
        body = await _phase(
            filter_instance,
            result,
            "response",
            headers=ctx.response.headers,
            chunks=_chunks(response_body),
            trailers=response_trailers,
        )
        result.response_body = body or b""
        return result
    finally:
        await _call(filter_instance, "on_stream_complete", result, ctx)


def _chunks(body: bytes | Sequence[bytes]) -> list[bytes]:
    if isinstance(body, bytes | bytearray):
        return [bytes(body)] if body else []
    return [bytes(c) for c in body]


async def _phase(
    inst: object,
    result: DriveResult,
    phase: str,
    *,
    headers: Headers,
    chunks: list[bytes],
    trailers: Headers | None,
) -> bytes | None:
    """One direction; the body as passed on, or ``None`` if a local reply ended it."""
    ctx = result.ctx
    res = await _call(
        inst, f"on_{phase}_headers", result, ctx, headers, not chunks and trailers is None
    )
    if _stopped(res, result, phase):
        return None
    limit = res.limit if isinstance(res, Buffer) and (chunks or trailers is not None) else None
    held: list[bytes] = []
    out: list[bytes] = []
    for i, chunk in enumerate(chunks):
        end = i == len(chunks) - 1 and trailers is None
        if limit is not None:
            held.append(chunk)
            if sum(map(len, held)) > limit:
                _too_large(result, phase)
                return None
            if not end:
                continue
            data, limit = b"".join(held), None
            held.clear()
        else:
            data = chunk
        res = await _call(inst, f"on_{phase}_data", result, ctx, data, end)
        if _stopped(res, result, phase):
            return None
        if isinstance(res, Buffer) and not end:
            limit = res.limit
            held.append(data)
            continue
        out.append(_rewritten(res, data))
    if held:  # trailers follow: the whole body, then the trailers
        whole = b"".join(held)
        res = await _call(inst, f"on_{phase}_data", result, ctx, whole, False)
        if _stopped(res, result, phase):
            return None
        out.append(_rewritten(res, whole))
    if trailers is not None:
        res = await _call(inst, f"on_{phase}_trailers", result, ctx, trailers)
        if _stopped(res, result, phase):
            return None
    return b"".join(out)


def _rewritten(res: object, chunk: bytes) -> bytes:
    data = getattr(res, "data", None) if isinstance(res, Continue) else None
    return data if isinstance(data, bytes) else chunk


def _stopped(res: object, result: DriveResult, phase: str) -> bool:
    if isinstance(res, LocalReply):
        result.local_reply, result.reply_phase = res, phase
        return True
    return False


def _too_large(result: DriveResult, phase: str) -> None:
    status = 413 if phase == "request" else 500
    result.local_reply = LocalReply(status, b"body too large\n", reason="body too large")
    result.reply_phase = phase


async def _call(inst: object, name: str, result: DriveResult, *args: Any) -> object:
    fn = getattr(inst, name, None)
    if fn is None or not _overrides(inst, name):
        return None  # (as the chain: a hook the class does not override is never called)
    result.calls.append(name)
    res = fn(*args)
    if isinstance(res, Pending):  # a sync hook that waits this time
        res = await res.ready
    elif inspect.isawaitable(res):
        res = await res
    _check_result(name, res)
    return res


def _check_result(name: str, res: object) -> None:
    if name == "on_stream_complete":
        if res is not None:
            raise FilterContractError(f"{name} must return None, got {res!r}")
        return
    if res is not None and not isinstance(res, Continue | Buffer | LocalReply):
        raise FilterContractError(
            f"{name} returned {res!r}; expected None, Continue, Buffer or LocalReply"
        )
    if isinstance(res, Buffer) and name not in _BUFFER_HOOKS:
        raise FilterContractError(f"{name} returned Buffer; only headers and data hooks may")
    if getattr(res, "data", None) is not None and name not in _DATA_HOOKS:
        raise FilterContractError(f"{name} returned Continue(data=...); only data hooks may")


# -- conformance ----------------------------------------------------------------------------


def check_filter(spec: FilterSpec[Any], raw_config: Any = None) -> None:
    """Run :func:`check_filter_async` on a fresh event loop (for sync tests)."""
    import anyio

    anyio.run(check_filter_async, spec, raw_config)


async def check_filter_async(spec: FilterSpec[Any], raw_config: Any = None) -> None:
    """Check that ``spec`` and its filter keep the filter contract.

    Checks: the spec is well formed; ``raw_config`` parses (``None`` means an
    empty config, or none for a config-less filter); the instance has no
    ``on_*`` attribute that is not a hook (a typo would never be called);
    every hook accepts the contract's arguments; ``around_upstream`` is
    ``async``; the policy hooks (``before_try``/``after_try``) are plain ``def``
    and not mixed with ``around_upstream``; a GET and a
    chunked POST run through :func:`drive` with valid results;
    ``on_stream_complete`` runs and returns ``None``; an instance of a
    ``stream_independent`` spec keeps the same state across streams.

    Raises:
        FilterContractError: naming the first broken rule.
    """
    if not isinstance(spec, FilterSpec) or not isinstance(spec.name, str) or not spec.name:
        raise FilterContractError(f"expected a FilterSpec with a name, got {spec!r}")
    if spec.parse_config is None:
        if raw_config:
            raise FilterContractError(f"{spec.name} takes no config, got {raw_config!r}")
        config = None
    else:
        config = spec.parse_config({} if raw_config is None else raw_config)
    make = spec.factory(config)  # exactly as the chain makes its instances
    instance = make()
    _check_hooks(spec.name, instance)
    exchanges: list[dict[str, Any]] = [
        {"request_head": make_request()},
        {
            "request_head": make_request("POST", "/upload?x=1", [("content-type", "text/plain")]),
            "request_body": [b"hello ", b"world"],
            "response_body": b"ok",
        },
    ]
    for kw in exchanges:
        inst = instance if spec.stream_independent else make()
        before = _state(inst)
        res = await drive(inst, **kw)
        if _overrides(inst, "on_stream_complete") and res.calls.count("on_stream_complete") != 1:
            raise FilterContractError(
                f"{spec.name}: on_stream_complete ran {res.calls.count('on_stream_complete')} times"
            )
        if spec.stream_independent and _state(inst) != before:
            raise FilterContractError(
                f"{spec.name} is stream_independent but its instance changed state in a stream"
            )


def _check_hooks(name: str, instance: object) -> None:
    ctx, headers = make_context(), Headers()
    arguments: dict[str, tuple[Any, ...]] = {
        "on_request_headers": (ctx, headers, True),
        "on_request_data": (ctx, b"", True),
        "on_request_trailers": (ctx, headers),
        "on_response_headers": (ctx, headers, True),
        "on_response_data": (ctx, b"", True),
        "on_response_trailers": (ctx, headers),
        "on_stream_complete": (ctx,),
        "before_try": (ctx, None),
        "after_try": (ctx, None, None),
        "around_upstream": (ctx, None, None),
    }
    for attr in dir(type(instance)):
        if attr.startswith(_PREFIXES) and attr not in HOOK_NAMES:
            close = difflib.get_close_matches(attr, HOOK_NAMES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise FilterContractError(f"{name}: {attr} is not a filter hook{hint}")
    overridden = [h for h in arguments if _overrides(instance, h)]
    for hook in overridden:
        args = arguments[hook]
        fn = getattr(instance, hook)
        if not callable(fn):
            raise FilterContractError(f"{name}: {hook} is not callable")
        try:
            inspect.signature(fn).bind(*args)
        except TypeError as exc:
            raise FilterContractError(f"{name}: {hook} has the wrong signature: {exc}") from None
        except ValueError:  # a mypyc-compiled async method has no signature (mypy checks it)
            pass
        if hook == "around_upstream" and not inspect.iscoroutinefunction(fn):
            raise FilterContractError(f"{name}: around_upstream must be async def")
        if hook in _POLICY and inspect.iscoroutinefunction(fn):
            raise FilterContractError(
                f"{name}: {hook} must be a plain def (return Pending to wait for something)"
            )
    if "around_upstream" in overridden and any(h in overridden for h in _POLICY):
        raise FilterContractError(
            f"{name}: around_upstream replaces before_try/after_try: implement one or the other"
        )


def _overrides(instance: object, hook: str) -> bool:
    """The instance's class has ``hook`` and it is not :class:`HttpFilter`'s do-nothing one."""
    fn = getattr(type(instance), hook, None)
    return fn is not None and fn is not getattr(HttpFilter, hook)


def _state(inst: object) -> object:
    """A shallow snapshot of an instance's attributes (``__dict__`` and slots)."""
    values: dict[str, object] = dict(getattr(inst, "__dict__", {}))
    for cls in type(inst).__mro__:
        for slot in getattr(cls, "__slots__", ()):
            if slot not in ("__dict__", "__weakref__") and hasattr(inst, slot):
                values[slot] = getattr(inst, slot)
    return values
