"""The header modifiers: Gateway API ``RequestHeaderModifier`` / ``ResponseHeaderModifier``.

Stateless (one shared instance serves every stream): the work is two
precomputed collections on the config, applied to the raw header list in one
pass plus one ``extend``.
"""

from __future__ import annotations

from plait.sdk import FilterResult, Headers, PassThroughFilter, StreamContext

from ._config import HeaderModifierConfig

__all__ = ["RequestHeaderModifier", "ResponseHeaderModifier"]


class _HeaderModifier(PassThroughFilter):
    __slots__ = ("_append", "_drop")

    def __init__(self, config: HeaderModifierConfig) -> None:
        self._drop = config.drop
        self._append = config.append

    def _apply(self, headers: Headers) -> None:
        raw = headers.raw
        if self._drop:
            drop = self._drop
            raw[:] = [pair for pair in raw if pair[0] not in drop]
        if self._append:
            raw.extend(self._append)


class RequestHeaderModifier(_HeaderModifier):
    """Edits the request head before it goes upstream."""

    __slots__ = ()

    def on_request_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        self._apply(headers)
        return None


class ResponseHeaderModifier(_HeaderModifier):
    """Edits the response head before it goes downstream."""

    __slots__ = ()

    def on_response_headers(
        self, ctx: StreamContext, headers: Headers, end_stream: bool
    ) -> FilterResult:
        self._apply(headers)
        return None
