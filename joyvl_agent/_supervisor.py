"""The one home of task creation and cancellation.

Every long-lived task is created through a `TaskSupervisor`, named, and tracked; shutdown
cancels them all. `cancel_and_wait` waits with a timeout (some libraries swallow
`CancelledError`), logs tasks that ignore the cancel, and re-raises only when the caller itself
is being cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["TaskSupervisor", "cancel_and_wait"]

log = logging.getLogger("joyvl_agent")


async def cancel_and_wait(task: asyncio.Task[Any], timeout: float = 5.0) -> None:
    """Cancel `task` and wait for it to finish, at most `timeout` seconds."""
    if task.done():
        return
    me = asyncio.current_task()
    before = me.cancelling() if me is not None else 0
    task.cancel()
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        log.warning("task %s ignored cancel for %.1f s", task.get_name(), timeout)
    except asyncio.CancelledError:
        if me is not None and me.cancelling() > before:
            raise
    except Exception:  # the task's own failure was already reported by its done callback
        pass


class TaskSupervisor:
    """Creates named tasks, logs their failures, and cancels them all on `aclose()`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{name}")
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        return frozenset(self._tasks)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Cancel every task and wait for them."""
        for task in list(self._tasks):
            await cancel_and_wait(task, timeout)
