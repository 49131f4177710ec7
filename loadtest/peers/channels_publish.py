"""Publish command for the Channels peer: ``<facility>\\t<payload>`` lines on stdin, each
group-sent as it is read (in order, one ``group_send`` at a time, as a Django view would).

``python -m loadtest.bench --peer --publish-command "python -m loadtest.peers.channels_publish"``
"""

from __future__ import annotations

import asyncio
import sys

from .channels_app import configure


async def publish_lines() -> None:
    from channels.layers import get_channel_layer  # noqa: PLC0415 (after configure())

    layer = get_channel_layer()
    assert layer is not None
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        facility, _, text = line.decode("ascii").rstrip("\n").partition("\t")
        await layer.group_send(facility, {"type": "push", "text": text})


def main() -> None:
    configure()
    asyncio.run(publish_lines())


if __name__ == "__main__":
    main()
