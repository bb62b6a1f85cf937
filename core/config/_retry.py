"""The HTTPRoute rule's ``retry`` stanza: GEP-1731 fields plus ``retry.plait``.

``retry{codes, attempts, backoff}`` follows the Gateway API (experimental,
GEP-1731); plait's own additions (``retryOn``, ``maxBackoff``,
``retryNonIdempotent``, ``maxReplayBytes``) live under ``retry.plait`` so they
cannot collide with future Gateway API fields. ``_resilience.py`` turns it into
the ``retry`` filter's config; the retry budget comes from the backend's
``BackendTrafficPolicy`` (``_policy.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ._fields import Fields, Loc

__all__ = ["DEFAULT_RETRY_ON", "RETRY_CONDITIONS", "RetryPolicy", "parse_retry"]

RETRY_CONDITIONS = (
    "connect-failure", "reset", "timeout", "5xx", "gateway-error",
    "unavailable", "cancelled", "deadline-exceeded", "resource-exhausted", "internal",
)  # fmt: skip
"""``retry.plait.retryOn`` vocabulary (Envoy's names). ``codes`` adds status codes."""
DEFAULT_RETRY_ON = ("connect-failure", "reset", "timeout", "unavailable", "cancelled")


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """An HTTPRoute rule's ``retry``: ``attempts`` retries after the first try."""

    attempts: int = 2
    codes: tuple[int, ...] = ()
    backoff: float = 0.025
    max_backoff: float = 0.25
    retry_on: tuple[str, ...] = DEFAULT_RETRY_ON
    retry_non_idempotent: bool = False
    max_replay_bytes: int = 64 * 1024


def parse_retry(f: Fields) -> RetryPolicy:
    """GEP-1731 ``retry{codes, attempts, backoff}`` plus ``retry.plait{...}``."""
    codes = []
    for value, loc in f.items("codes", max_items=64):
        if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
            raise loc.expected("an HTTP status code 400..599", value)
        codes.append(value)
    attempts = f.integer("attempts", 2, lo=0, hi=100)
    backoff = f.duration("backoff", 0.025)
    max_backoff, non_idem, replay = 0.25, False, 64 * 1024
    retry_on: tuple[str, ...] = DEFAULT_RETRY_ON
    if (p := f.sub("plait")) is not None:
        max_backoff = p.duration("maxBackoff", max(0.25, backoff))
        if max_backoff < backoff:
            raise p.at("maxBackoff").error(
                f"expected at least retry.backoff ({backoff}s), got {max_backoff}s"
            )
        retry_on = tuple(_condition(v, loc) for v, loc in p.items("retryOn", max_items=16))
        non_idem = _boolean(p, "retryNonIdempotent", False)
        replay = p.integer("maxReplayBytes", replay, lo=0, hi=64 << 20)
        p.done()
    elif backoff > max_backoff:
        max_backoff = backoff * 10  # Envoy: max defaults to 10 x base
    f.done()
    return RetryPolicy(
        attempts=attempts,
        codes=tuple(codes),
        backoff=backoff,
        max_backoff=max_backoff,
        retry_on=retry_on,
        retry_non_idempotent=non_idem,
        max_replay_bytes=replay,
    )


def _condition(value: object, loc: Loc) -> str:
    if not isinstance(value, str) or value not in RETRY_CONDITIONS:
        raise loc.expected("a retry condition: one of " + ", ".join(RETRY_CONDITIONS), value)
    return value


def _boolean(f: Fields, key: str, default: bool) -> bool:
    if not f.has(key):
        return default
    value = f.raw[key]
    if not isinstance(value, bool):
        raise f.at(key).expected("true or false", value)
    return value
