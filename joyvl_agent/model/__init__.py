"""The interaction model: decision protocol, prompt assembly with hard budgets, backends."""

from ._decision import Decision, DecisionAction, Dialect, clean_user_text, parse_decision
from ._interaction import Answer, CircuitBreaker, IdlePolicy, InteractionModel
from ._prompt import (
    BackgroundResult,
    MemoryBlock,
    PromptBudget,
    PromptBuilder,
    PromptStats,
    QARecord,
    Turn,
    estimate_text_tokens,
)
from ._texts import (
    PERSONAS,
    QUERY_HEADER,
    Persona,
    load_system_prompt,
    matches_upstream,
    system_prompt,
    time_marker,
)
from ._types import (
    ChatMessage,
    EncodedImage,
    ModelBackend,
    ModelReply,
    ModelRequest,
    SamplingParams,
    TextPart,
)

__all__ = [
    "PERSONAS",
    "QUERY_HEADER",
    "Answer",
    "BackgroundResult",
    "ChatMessage",
    "CircuitBreaker",
    "Decision",
    "DecisionAction",
    "Dialect",
    "EncodedImage",
    "IdlePolicy",
    "InteractionModel",
    "MemoryBlock",
    "ModelBackend",
    "ModelReply",
    "ModelRequest",
    "Persona",
    "PromptBudget",
    "PromptBuilder",
    "PromptStats",
    "QARecord",
    "SamplingParams",
    "TextPart",
    "Turn",
    "clean_user_text",
    "estimate_text_tokens",
    "load_system_prompt",
    "matches_upstream",
    "parse_decision",
    "system_prompt",
    "time_marker",
]
