"""The sync protocol (SPEC section 3): push, pull, status and conflicts over each area's push ops
and pull sources (listed in ``registry.py``), the merge and the HLC. Its wire Structs are in
``gridsync.models``. ``client.py`` and ``simulate.py``, the reference device client, live here
beside what they model but are a face: they import nothing of the server (``pyproject.toml``,
the import contract)."""
