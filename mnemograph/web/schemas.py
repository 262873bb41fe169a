"""Request and response bodies of the REST routes (LangServe declares ``/agent``'s itself)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stores.postgres.threads import ThreadInfo


class ThreadCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    thread_id: str = Field(..., description="Client-chosen id: letters, digits, _:@-")
    title: str = Field("", max_length=200)

    @field_validator("title")
    @classmethod
    def _printable(cls, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ValueError("title contains control characters")
        return value


class ThreadOut(BaseModel):
    thread_id: str
    title: str
    created_at: str
    updated_at: str

    @classmethod
    def of(cls, info: ThreadInfo) -> ThreadOut:
        return cls(
            thread_id=info.thread_id,
            title=info.title,
            created_at=info.created_at.isoformat(),
            updated_at=info.updated_at.isoformat(),
        )


class MessageOut(BaseModel):
    id: str | None
    type: str
    content: str


class ThreadDetail(ThreadOut):
    summary: str
    turns: int
    messages: list[MessageOut]


class Deleted(BaseModel):
    deleted: dict[str, int]
