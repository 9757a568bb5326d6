"""Holds idle keep-alive connections to a server from one source address,
as a hostile client would (bench/run.sh ONLY=hardening).

    python3 hold_idle.py SOURCE_IP HOST PORT COUNT

Opens COUNT connections from SOURCE_IP (any of 127.0.0.0/8), sends one
GET /healthz on each and keeps those that were answered open and silent.
Prints one line when done ("held N, answered A, refused R"), then holds
them until killed.
"""
import asyncio
import signal
import sys


async def one(source, host, port):
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=(source, 0)), 5
        )
    except (OSError, asyncio.TimeoutError):
        return None, False
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        return None, False
    status = head.split(b" ", 2)[1]
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    try:
        await asyncio.wait_for(reader.readexactly(length), 5)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        writer.close()
        return None, False
    if status != b"200":
        writer.close()
        return None, True
    return writer, True


async def main():
    source, host, port, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    held, answered, refused = [], 0, 0
    for start in range(0, count, 64):
        results = await asyncio.gather(
            *(one(source, host, port) for _ in range(min(64, count - start)))
        )
        for writer, was_answered in results:
            answered += was_answered
            if writer is None:
                refused += 1
            else:
                held.append(writer)
    print(f"held {len(held)}, answered {answered}, refused {refused}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()


asyncio.run(main())
