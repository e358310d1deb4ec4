"""What the MCP tools return: pydantic models, so every tool has an output schema."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from joyvl_agent.delegation import DelegationTask
from joyvl_agent.events import DelegationState
from joyvl_agent.memory import RecallHit

__all__ = [
    "ClaimResult",
    "ClearResult",
    "DelegationInfo",
    "DelegationList",
    "EventPage",
    "RecallResult",
    "ResetResult",
    "SnapshotInfo",
    "TaskState",
]


class EventPage(BaseModel):
    """One page of the session's event log (the cursor long-poll)."""

    events: list[dict[str, Any]] = Field(
        description="Flat event objects (`seq`, `kind`, `t`, `wall`, `session_id`, then the "
        "kind's own fields), oldest first")
    cursor: int = Field(description="Pass this back as `cursor` to get what follows")
    truncated: bool = Field(description="More events were ready than `max_events`: poll again "
                            "at once")
    behind_retention: bool = Field(
        description="Events after your cursor were already deleted by retention; the page "
        "starts at the oldest one still stored")
    oldest_seq: int = Field(description="The oldest `seq` still stored (0 when none)")


class RecallResult(BaseModel):
    """Memory hits, best first."""

    hits: list[RecallHit]


class TaskState(BaseModel):
    """The standing instruction after `set_task`."""

    task: str
    once: bool
    expires_at: float | None = Field(None, description="Session seconds; null: never")


class ClearResult(BaseModel):
    cleared: bool = Field(description="False when there was no task to clear")


class ResetResult(BaseModel):
    reset: Literal[True] = True
    last_seq: int = Field(description="The newest event `seq` after the reset")


class SnapshotInfo(BaseModel):
    """The frame sent as image content."""

    frame_t: float = Field(description="Capture time, session seconds")
    age_s: float = Field(description="How long ago it was captured, seconds")
    width: int
    height: int
    mime_type: Literal["image/jpeg"] = "image/jpeg"
    bytes: int


class DelegationInfo(BaseModel):
    """A delegated task as the ledger knows it (no frames)."""

    task_id: str
    question: str
    note: str | None = None
    target: str | None = None
    state: DelegationState
    created_t: float
    started_t: float | None = None
    ended_t: float | None = None
    result: str | None = None
    data: Any = None
    artifacts: list[dict[str, str]] = Field(default_factory=list)
    error: str | None = None

    @classmethod
    def of(cls, task: DelegationTask) -> DelegationInfo:
        return cls.model_validate(task.summary())


class DelegationList(BaseModel):
    tasks: list[DelegationInfo]


class ClaimResult(BaseModel):
    """The task leased to you (its frames come as image content), or none."""

    task: DelegationInfo | None
    lease_s: float | None = Field(None, description="Complete it within this many seconds")
    standing_task: str | None = Field(None, description="The session's standing instruction")
    recent_speech: list[str] = Field(default_factory=list)
    frame_times: list[float] = Field(default_factory=list,
                                     description="Capture times of the attached frames")
