"""Starts the emulated world and the operator, then tells the story."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from ..sandbox.harness import OperatorProcess
from ..sandbox.world import Sandbox
from .story import CHAPTERS, StoryFailed, make_context
from .timeline import Timeline


async def run_demo(workdir: Path, keep: bool, block_interval: float = 0.5) -> int:
    timeline = Timeline()
    workdir.mkdir(parents=True, exist_ok=True)
    timeline.chapter("Starting an emulated cluster, a simulated MAYAChain network and the operator")
    async with Sandbox.start(block_interval=block_interval, workdir=workdir) as sandbox:
        kubeconfig = workdir / "kubeconfig"
        timeline.saw(f"API server {sandbox.url}, mocknet {sandbox.mocknet.url}")
        timeline.note(f"kubeconfig: {kubeconfig}   (try: kubectl --kubeconfig {kubeconfig} get mn -A)")
        metrics_port = free_port()
        operator = OperatorProcess(kubeconfig, workdir / "operator.log",
                                   extra_env={"MAYANODE_OPERATOR_METRICS_PORT": str(metrics_port)}).start()
        timeline.saw(f"operator started (log: {workdir / 'operator.log'}, "
                     f"metrics: http://127.0.0.1:{metrics_port}/metrics)")
        ctx = make_context(sandbox, timeline)
        try:
            for chapter in CHAPTERS:
                await chapter(ctx)
                if not operator.running:
                    raise StoryFailed("the operator process exited; see its log")
        except StoryFailed as err:
            timeline.fail(str(err))
            timeline.note(f"operator log: {workdir / 'operator.log'}")
            operator.stop()
            return 1
        timeline.chapter("The story completed")
        if keep:
            timeline.note("--keep: the cluster and the operator keep running; Ctrl-C to stop")
            await _wait_for_interrupt()
        operator.stop()
    return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _wait_for_interrupt() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def main(workdir: str, keep: bool) -> int:
    os.environ.pop("KUBECONFIG", None)
    try:
        return asyncio.run(run_demo(Path(workdir).resolve(), keep))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main(".demo", "--keep" in sys.argv))
