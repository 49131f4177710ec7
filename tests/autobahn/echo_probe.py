"""Trivial websockets echo server used only to smoke-test the wstest install.

Usage: python tests/autobahn/echo_probe.py [PORT]   (binds 127.0.0.1, default 9011)
Runs until killed.
"""

import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


async def main(port: int) -> None:
    async with serve(echo, "127.0.0.1", port, max_size=None, compression=None) as server:
        print(f"echo_probe listening on 127.0.0.1:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 9011))
