"""PII redaction: what must be caught, and ordinary numbers that must survive."""

from __future__ import annotations

import pytest

from stores.pii import iban_ok, luhn_ok, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail ada.l@example.co.uk now", "mail [EMAIL] now"),
        ("card 4111 1111 1111 1111 exp 12/29", "card [CARD] exp 12/29"),
        ("card 4111-1111-1111-1111", "card [CARD]"),
        ("ssn 123-45-6789.", "ssn [SSN]."),
        ("call +44 20 7946 0958 or (555) 123-4567", "call [PHONE] or [PHONE]"),
        ("ring 555-123-4567 or +14155552671", "ring [PHONE] or [PHONE]"),
        ("IBAN GB82 WEST 1234 5698 7654 32 thanks", "IBAN [IBAN] thanks"),
        ("DE89370400440532013000", "[IBAN]"),
    ],
)
def test_redacts(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "not a card 1234 5678 9012 3456",  # fails Luhn
        "born in 1987, paid 1500 dollars on 2023-05-01 or 12.05.2023",
        "order 12345, room 12 34, between 9-5",
        "I live at 221B Baker Street",
    ],
)
def test_keeps_ordinary_text(text: str) -> None:
    assert redact(text) == text


def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82WEST12345698765432") and not iban_ok("GB82WEST12345698765433")
    assert "[IBAN]" not in redact("GB00 WEST 1234 5698 7654 32")
