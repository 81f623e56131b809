"""Idle TLS clients for ``bench/http_load.py``: ``python bench/_idle_tls.py PORT N``.

Keeps N connections to PORT open with their TLS handshake done and no request sent (the
server closes each after its idle deadline; this reopens it), so that a probe measured
meanwhile meets a server holding N idle TLS connections. Prints ``ready`` once N are up.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import sys


async def hold(port: int, context: ssl.SSLContext, up: list[int], ready: asyncio.Event) -> None:
    """One client slot: connect, handshake, wait for the server to close, again."""
    while True:
        try:
            _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        except OSError:
            await asyncio.sleep(0.1)
            continue
        up[0] += 1
        if up[0] >= up[1]:
            ready.set()
        with contextlib.suppress(OSError):
            await _reader.read()
        writer.close()
        up[0] -= 1


async def main(port: int, count: int) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    up, ready = [0, count], asyncio.Event()
    tasks = [asyncio.create_task(hold(port, context, up, ready)) for _ in range(count)]
    await ready.wait()
    print("ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
