"""``plait sidecar`` with its CertStore filled from files: a test stand-in for the identity agent.

Usage: ``identity_sidecar.py DIR <plait CLI arguments>``. ``DIR`` holds ``chain.pem``,
``key.pem`` and ``bundle.pem``; the runtime's :class:`~plait.core.identity.CertStore` is
filled from them at start, and again on ``SIGUSR1`` (a rotation: new handshakes use the
new files, open connections keep theirs). Everything else is the real sidecar.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

from plait.core.identity import CertStore
from plait.core.ops import cli
from plait.core.ops import sidecar as sidecar_module
from plait.core.runtime import Runtime


def fill(store: CertStore, where: Path) -> None:
    store.update(
        chain_pem=(where / "chain.pem").read_bytes(),
        key_pem=(where / "key.pem").read_bytes(),
        bundle_pem=(where / "bundle.pem").read_bytes(),
    )


def main() -> int:
    where = Path(sys.argv[1])

    def runtime(*args: Any, **kw: Any) -> Runtime:
        rt = Runtime(*args, **kw)
        fill(rt.identity, where)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR1, fill, rt.identity, where)
        return rt

    setattr(sidecar_module, "Runtime", runtime)  # noqa: B010 (the sidecar builds it by name)
    return cli.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
