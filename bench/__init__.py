"""Benchmarks against DESIGN.md section 7; each ``bench/<name>.py`` runs with one command."""
