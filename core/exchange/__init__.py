"""One request/response exchange: the machine, its driver, the chain and the bodies.

Read in this order: ``machine.py`` (the stream's life as a generator that yields
every wait), ``actions.py`` (what it yields), ``driver.py`` (who performs the
actions: a task, or HTTP/1.1 callbacks), ``chain.py`` and ``phase.py`` (the
filter hooks' walks), ``tries.py`` (the upstream layers' policies around each
try), ``upstream.py`` (one try), ``bodies.py``, ``tunnel.py``, ``errors.py``.
docs/data-path.md walks one request through them. The exchange sits between the downstream
connections (``core/server``, which implement :class:`Downstream` and call the
drivers) and the upstream pools (``core/upstream``, whose streams it uses).
"""

from .chain import Chain, ChainRun, FilterFailureCounter
from .errors import grpc_reply, is_grpc, local_reply_head, primary
from .phase import PhaseOutcome
from .streams import Downstream

__all__ = [
    "Chain",
    "ChainRun",
    "Downstream",
    "FilterFailureCounter",
    "PhaseOutcome",
    "grpc_reply",
    "is_grpc",
    "local_reply_head",
    "primary",
]
