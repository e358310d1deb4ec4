"""Message content helpers: text and images out of LangChain content blocks, data URLs."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

__all__ = ["image_urls", "jpeg_data_url", "last_text", "text_of"]


def jpeg_data_url(jpeg: bytes) -> str:
    """`data:image/jpeg;base64,...` for JPEG bytes."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def text_of(content: Any) -> str:
    """The text of a message's content: a string, or the text blocks of a block list."""
    if isinstance(content, str):
        return content.strip()
    parts: list[str] = []
    for block in content or []:
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "\n".join(p for p in parts if p).strip()


def image_urls(content: Any) -> list[str]:
    """The images of a content block list as URLs (data URLs for base64 blocks)."""
    urls: list[str] = []
    if isinstance(content, str):
        return urls
    for block in content or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "image_url":
            url = block.get("image_url")
            url = url.get("url") if isinstance(url, dict) else url
            if url:
                urls.append(str(url))
        elif block.get("type") == "image":
            data = block.get("base64") or block.get("data")
            if data:
                mime = block.get("mime_type") or "image/jpeg"
                urls.append(f"data:{mime};base64,{data}")
            elif block.get("url"):
                urls.append(str(block["url"]))
    return urls


def last_text(messages: Iterable[Any]) -> str:
    """The text of the last message in `messages` that has any (the answer of a chat agent)."""
    for message in reversed(list(messages)):
        content = getattr(message, "content", None)
        if content is None and isinstance(message, dict):
            content = message.get("content")
        text = text_of(content)
        if text:
            return text
    return ""
