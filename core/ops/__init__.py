"""Operations beside the data path: the ``plait`` command line, the sidecar process and its
admin API, the multi-worker supervisor, and the static demo.

``sidecar`` builds the data path (``plait.core.runtime``, the listeners) and runs it; nothing
on the data path imports this package.
"""
