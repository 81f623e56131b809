"""One module per check; the module name is the check id. Each module registers a ``CheckSpec``.

Modules import heavy libraries (``h2`` for the CRI call) inside their functions, not at the top:
every command loads every check module to know the ids, and ``probe`` must stay fast.
"""
