"""selfcheck: proves, from inside the Datadog Agent's pod, that its host access works."""

__version__ = "0.1.0"
