"""Errors a user can act on. Hosts (CLI, server) turn them into one clear line or a 4xx/503."""


class MnemographError(Exception):
    """Base class: the message is meant for the person running the system."""


class ConfigurationError(MnemographError):
    """The deployment is missing something it needs (a model, an extra, a setting)."""


class ServiceUnavailable(MnemographError):
    """A backing service (Postgres, graph server, LLM) cannot be reached right now."""

    def __init__(self, service: str, detail: str) -> None:
        super().__init__(f"{service} is unavailable: {detail}")
        self.service = service
        self.detail = detail


class NotFound(MnemographError):
    """The thing does not exist, or belongs to someone else; the two are never told apart."""


class Gone(NotFound):
    """The user (or their thread) was deleted: nothing more is stored for them, ever."""


class InvalidInput(MnemographError):
    """The caller sent something malformed; nothing was stored."""


class Conflict(MnemographError):
    """What the caller asked to create already exists, differently (HTTP 409): an Agent
    Protocol thread created again, or a restored thread whose stored content differs."""
