"""``plait apply``'s side of module delivery: upload the files wasm Filters name.

A ``Filter`` with ``spec.wasm.url`` a file path names a module on the operator's
machine (relative paths are relative to the YAML file's directory, as a static
sidecar reads them). The CLI reads each such file and sends its bytes with the
documents, base64 in the apply request's ``modules``; the control plane checks them
against ``spec.wasm.sha256`` and keeps them (``_modules.py``). https URLs are not
read here: the control plane fetches them itself. Documents the CLI cannot read as
YAML are sent as they are (the control plane reports their errors).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path

import yaml

__all__ = ["module_uploads"]


def module_uploads(files: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """``{"source", "url", "data"}`` for every file URL of a wasm Filter in ``files``.

    Raises:
        OSError: a module file cannot be read (the message names the YAML file and URL).
    """
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for source, text in files:
        for url in _file_urls(text):
            if (source, url) in seen:
                continue
            seen.add((source, url))
            path = Path(url)
            if not path.is_absolute() and not source.startswith("<"):
                path = Path(source).parent / path
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise OSError(
                    f"{source}: spec.wasm.url {url!r}: cannot read {path}: {exc.strerror or exc}"
                ) from None
            out.append({"source": source, "url": url,
                        "data": base64.b64encode(data).decode("ascii")})  # fmt: skip
    return out


def _file_urls(text: str) -> list[str]:
    try:
        docs = list(yaml.safe_load_all(text))
    except yaml.YAMLError:
        return []
    urls = []
    for doc in docs:
        if not isinstance(doc, dict) or doc.get("kind") != "Filter":
            continue
        spec = doc.get("spec")
        wasm = spec.get("wasm") if isinstance(spec, dict) else None
        url = wasm.get("url") if isinstance(wasm, dict) else None
        if isinstance(url, str) and url and "://" not in url:
            urls.append(url)
    return urls
