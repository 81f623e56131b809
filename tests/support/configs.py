"""One factory for the configurations tests run checks under.

A test names only the settings it is about, as the environment variables a pod would set
(``make_config(HOST_PROC=tree)``); everything else is the default ``selfcheck.config.load`` gives,
so a test never carries its own idea of the defaults. Values may be paths or numbers: they
are written as the strings an environment holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike

from selfcheck.config import Config, load
from selfcheck.context import CheckContext
from selfcheck.model import Outcome
from selfcheck.registry import CheckSpec, known_ids, required_ids, settle

Setting = str | int | float | PathLike[str]

FAST = {"SELFCHECK_CHECK_TIMEOUT": "0.3", "SELFCHECK_INTERVAL": "0.2"}
"""Short cycles for runner and server tests, which wait for several of them."""


def environment(base: Mapping[str, str] | None = None, **settings: Setting) -> dict[str, str]:
    """``base`` with ``settings`` as an environment's strings."""
    return {**(base or {}), **{name: str(value) for name, value in settings.items()}}


def make_config(
    base: Mapping[str, str] | None = None,
    *,
    checks: Iterable[str] | None = None,
    **settings: Setting,
) -> Config:
    """The configuration for ``settings`` (over ``base``), knowing ``checks`` (the registry's
    by default), read as ``load`` reads a pod's environment."""
    known = known_ids() if checks is None else frozenset(checks)
    return load(known, environment(base, **settings))


def settled(spec: CheckSpec, ctx: CheckContext) -> Outcome:
    """A check's verdict as the runner publishes it: ``run``, then what required-ness does to it
    (``selfcheck.registry.settle``: not_enabled when unused, a required critical finding...)."""
    required = spec.id in required_ids(ctx.config, {spec.id: spec})
    return settle(spec, spec.run(ctx), required, ctx.config)
