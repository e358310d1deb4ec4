"""A writer killed with SIGKILL mid-stream loses nothing it had announced."""

import os
import signal
import subprocess
import sys
import textwrap

from joyvl_agent import Store

WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from joyvl_agent import EventBus, Store, WallClock
    from joyvl_agent.events import SpeechEvent

    async def main():
        store = Store(sys.argv[1])
        bus = EventBus("crash", WallClock(), persist=store.append)
        i = 0
        while True:
            i += 1
            e = await bus.publish(SpeechEvent(text=f"event number {i} " + "x" * 200,
                                              reason="task"))
            print(e.seq, flush=True)   # announced only after it is durable

    asyncio.run(main())
    """
)


def test_sigkill_mid_stream_keeps_every_announced_event(db_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path)], stdout=subprocess.PIPE, text=True
    )
    announced: list[int] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        announced.append(int(line))
        if len(announced) >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    for line in proc.stdout:  # whatever it printed before dying
        announced.append(int(line))
    assert proc.returncode == -signal.SIGKILL

    with Store(db_path) as store:
        assert store.integrity_check() == "ok"
        stored = [e.seq for e in store.events("crash")]
        assert set(announced) <= set(stored)
        assert stored == list(range(1, len(stored) + 1))  # consistent: no holes
        rec = store.session("crash")
        assert rec is not None and rec.last_seq == stored[-1]
        assert len(store.search("number")) == 10  # FTS index is consistent too
