"""Helpers the tests share: real daemons, namespaces, other users, stand-ins."""
