"""PII redaction applied before anything reaches long-term memory or the knowledge graph.

Chat history keeps what the user typed (it is theirs, and deleting it is a GDPR request away),
but derived, longer-lived memory should never hold card numbers or national ids. Patterns are
conservative: card numbers must pass the Luhn check and IBANs their mod-97 check, so ordinary
numbers (years, prices, order ids) survive.
"""

from __future__ import annotations

import re

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}\b")
_CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
_PHONE = re.compile(
    r"(?<![\w+(])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?)?\d{2,4}(?:[ .-]\d{2,4}){1,4}(?![\w-])"
    r"|(?<![\w+])\+\d{8,15}(?!\w)"
)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _cards(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[CARD]" if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)


def _ibans(match: re.Match[str]) -> str:
    return "[IBAN]" if iban_ok(match.group(0)) else match.group(0)


_DATE = re.compile(r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[./-]\d{1,2}[./-]\d{2,4}")


def _phones(match: re.Match[str]) -> str:
    found = match.group(0)
    digits = re.sub(r"\D", "", found)
    if _DATE.fullmatch(found) or not 7 <= len(digits) <= 15:
        return found
    return "[PHONE]"


def redact(text: str) -> str:
    """Replace emails, IBANs, card numbers, SSNs and phone numbers with placeholders."""
    if not text:
        return text
    text = _EMAIL.sub("[EMAIL]", text)
    text = _IBAN.sub(_ibans, text)
    text = _CARD.sub(_cards, text)
    text = _SSN.sub("[SSN]", text)
    return _PHONE.sub(_phones, text)
