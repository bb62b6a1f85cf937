"""A sidecar that does not trace loads no OpenTelemetry (about 8 MB per process)."""

from __future__ import annotations

import subprocess

from tests.support import PY


def test_the_runtime_imports_opentelemetry_only_for_a_config_that_traces() -> None:
    code = (
        "import sys\n"
        "import plait.core.runtime, plait.core.ops.sidecar\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout
