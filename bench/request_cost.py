"""The CPU one HTTP GET costs a Python client on this machine: the floor under any per-node observation.

    .venv/bin/python bench/request_cost.py [--event-loop uvloop|asyncio]

An aiohttp server in a child process answers a small JSON document; this process sends GETs with one aiohttp
session (keep-alive), one at a time and six at once, and reports its own user and system CPU time per request.
Then the CPU of one name lookup through aiohttp's default resolver (what a read costs more when its name is not in
aiohttp's DNS cache): `localhost`, answered from /etc/hosts, so the floor of a lookup; in a pod, a Service name goes
through the search domains to the cluster's DNS server (up to six queries with `ndots:5`).
"""

from __future__ import annotations

import asyncio
import resource
import socket
import subprocess
import sys
import time

import aiohttp

SERVER = """
import json, sys
from aiohttp import web
body = json.dumps({"kind": "Status", "items": [], "metadata": {"resourceVersion": "1"}}).encode()
async def answer(request): return web.Response(body=body, content_type="application/json")
app = web.Application(); app.router.add_get("/x", answer)
web.run_app(app, port=int(sys.argv[1]), print=None, access_log=None)
"""


def cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def measure(url: str, n: int) -> None:
    async with aiohttp.ClientSession() as session:
        async def one() -> None:
            async with session.get(url) as response:
                await response.read()

        for _ in range(200):                                  # warm the connection pool and the code paths
            await one()
        for label, batch in (("one at a time", 1), ("six at once", 6)):
            (u0, s0), t0 = cpu(), time.perf_counter()
            for _ in range(n // batch):
                await asyncio.gather(*(one() for _ in range(batch)))
            (u1, s1), wall = cpu(), time.perf_counter() - t0
            print(f"{label:14s} user {(u1 - u0) / n * 1e3:.3f} ms  system {(s1 - s0) / n * 1e3:.3f} ms  "
                  f"wall {wall / n * 1e3:.3f} ms per request ({n} requests)")


async def measure_lookups(n: int) -> None:
    resolver = aiohttp.DefaultResolver()
    for _ in range(100):
        await resolver.resolve("localhost", 80)
    (u0, s0), t0 = cpu(), time.perf_counter()
    for _ in range(n):
        await resolver.resolve("localhost", 80)
    (u1, s1), wall = cpu(), time.perf_counter() - t0
    await resolver.close()
    print(f"{'name lookup':14s} user {(u1 - u0) / n * 1e3:.3f} ms  system {(s1 - s0) / n * 1e3:.3f} ms  "
          f"wall {wall / n * 1e3:.3f} ms per lookup ({type(resolver).__name__}, {n} lookups of localhost)")


def main() -> int:
    event_loop = sys.argv[sys.argv.index("--event-loop") + 1] if "--event-loop" in sys.argv else "uvloop"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        factory = None
        if event_loop == "uvloop":
            import uvloop
            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(measure(f"http://127.0.0.1:{port}/x", 3000))
            runner.run(measure_lookups(3000))
    finally:
        server.terminate()
        server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
