"""Protobuf encoding for test input: selfcheck only decodes (the CRI ``Version`` reply)."""

from __future__ import annotations


def string_field(number: int, value: str) -> bytes:
    """Field ``number`` of wire type 2 (length-delimited) holding ``value``."""
    data = value.encode()
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if not value:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)
