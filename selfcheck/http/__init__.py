"""The HTTP surface: ``app`` decides the answers, ``server`` moves the bytes."""
