"""Benchmarks against docs/performance.md; each ``bench/<name>.py`` runs with one command."""
