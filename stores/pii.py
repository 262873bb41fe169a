"""PII redaction applied before anything reaches long-term memory or the knowledge graph.

Chat history keeps what the user typed (it is theirs, and deleting it is a GDPR request away),
but derived, longer-lived memory should never hold phone numbers, card numbers or national
ids. Redaction runs on every memory write, and a false positive silently destroys what the
user said ("I run 10 12 15 20 km" must stay a distance), so every detector needs evidence
beyond "looks like digits":

* cards must have a card-network prefix, a card length and grouping, and pass the Luhn check;
* IBANs must pass their mod-97 check;
* phone numbers must be *valid* numbers of a known numbering plan (libphonenumber, the
  metadata Android uses), written with a grouping that plan allows. National forms such as
  ``06 12 34 56 78`` only mean something for a region, so the regions to look for are a
  setting (``pii_regions``); numbers in international ``+CC`` form are found whatever it is.

Everything here is pure (no I/O) and immutable: a :class:`PiiRedactor` is built once from the
settings and shared by every request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from phonenumbers import (
    SUPPORTED_REGIONS,
    Leniency,
    PhoneNumber,
    PhoneNumberMatcher,
    PhoneNumberType,
    country_code_for_region,
    national_significant_number,
    number_type,
)

DEFAULT_REGIONS: Final[tuple[str, ...]] = (
    "US",
    "GB",
    "FR",
    "DE",
    "ES",
    "IT",
    "NL",
    "IN",
    "BR",
    "JP",
    "AU",
)
"""Where national-form numbers are looked for unless configured: the main locales of our users.
NANP (US) also covers Canada and the Caribbean. Each extra region costs time and raises the
odds that some benign digit group is a valid number somewhere, so keep the list to where
users are."""

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}\b")
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
# Cards are written as one block or in the groups printed on them: fours (4-4-4-4, 4-4-4-2,
# 4-4-4-4-3), or 4-6-5 and 4-6-4 (Amex, Diners). Anything else (ISBNs, part numbers, long
# lists) is not a card.
_CARD = re.compile(
    r"(?<![\w+.,-])"
    r"(?:\d{14,19}"
    r"|\d{4}([ -])\d{4}\1\d{4}\1\d{2,4}(?:\1\d{3})?"
    r"|\d{4}([ -])\d{6}\2\d{4,5})"
    r"(?![\w]|[.,-]\d)"
)
# Issuer prefixes of the card networks (Visa, Mastercard 51-55 and 2221-2720, Amex, Diners,
# JCB, Discover, UnionPay, Maestro). EAN barcodes (13 digits) and ISBNs (978/979) never match.
_CARD_PREFIX = re.compile(r"4|5[0-9]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|3[0456789]|6")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?\b")
# 912 500 000, 1.234.567, 3,450,000: an amount, whatever numbering plan it fits.
_THOUSANDS = re.compile(r"\d{1,3}(?:([ ,.\u00a0\u202f])\d{3})(?:\1\d{3})*")
# A phone number has at least 6 digits in one run of digits and phone punctuation; text
# without such a run skips the (comparatively slow) phone matcher entirely.
_MAYBE_PHONE = re.compile(r"\d(?:[ \t\-./()\u00a0]{0,3}\d){5}")


def luhn_ok(digits: str) -> bool:
    """The Luhn check every payment card number passes (and 9 in 10 random numbers fail)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(candidate: str) -> bool:
    """The ISO 13616 mod-97 check: a typo or a random code fails it."""
    compact = candidate.replace(" ", "")
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(c, 36)) for c in rearranged)
    return int(number) % 97 == 1


def _cards(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 14 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_ok(digits):
        return "[CARD]"
    return match.group(0)


def _ibans(match: re.Match[str]) -> str:
    return "[IBAN]" if iban_ok(match.group(0)) else match.group(0)


# A person's number; service numbers (toll-free, premium, shared-cost, UAN, pager, personal
# "follow-me" ranges) are businesses' and are where most benign collisions land (ES 7xx…).
_PERSONAL_TYPES: Final = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.VOIP,
    }
)


def _national_ok(number: PhoneNumber, raw: str, region: str) -> bool:
    """Whether a valid national-form match is a person's phone number and not a benign list.

    It must be a fixed, mobile or VoIP number, and either be written with digit groups its
    plan's formats keep together (libphonenumber's ``STRICT_GROUPING``: "06 12 34 56 78",
    "030 12345678", "(02) 9876 5432") or have at least 10 digits and either a trunk prefix 0
    in groups of two or more, or be a mobile number in groups of three or more: common
    informal groupings ("0151 2345 6789", "987 654 3210") that ordinary numbers (and
    ISBN-10s such as "0-19-852663-6") rarely have.

    Numbers without a trunk prefix are where plans collide with ordinary numbers (any nine
    digits from 6 to 9 are a Spanish number), so they need more: the exact grouping of one
    of the plan's formats (``EXACT_GROUPING``: "(646) 829-3174", "612 34 56 78", not a part
    number "700-1234-56"), and never the shape of a thousands-separated amount
    ("912 500 000", which costs Spanish mobiles written "612 345 678") or of a list of small
    numbers ("70 16 74 40 72", valid in India by an alternate format). A lone leading "0"
    group is how part numbers are written ("0 451 103 316"), never phones.
    """
    if number_type(number) not in _PERSONAL_TYPES:
        return False
    groups = re.findall(r"\d+", raw)
    if number.extension and len(groups) > 1 and groups[-1] == number.extension:
        groups.pop()  # "(416) 977-3319, ext 204": judge the number, not its extension
    if groups[0] == "0":  # "0 451 103 316": part numbers, never how a phone is written
        return False
    trunk = groups[0].startswith("0")
    if not trunk and (_THOUSANDS.fullmatch(raw) or max(map(len, groups)) <= 2):
        return False
    joined, nsn = "".join(groups), national_significant_number(number)
    if not trunk and joined not in (nsn, "1" + nsn):
        # Digits were dropped to make it fit: "9198 8745 1231" read as +91 without the plus,
        # or a carrier code. Ids look like that; phones are written with "+" (or "1" in NANP).
        return False
    digits, shortest = sum(map(len, groups)), min(map(len, groups))
    if digits >= 10 and (
        (trunk and shortest >= 2)
        or (number_type(number) is PhoneNumberType.MOBILE and shortest >= 3)
    ):
        return True
    grouping = Leniency.STRICT_GROUPING if trunk else Leniency.EXACT_GROUPING
    return any(True for _ in PhoneNumberMatcher(raw, region, leniency=grouping))


def _normalise_regions(regions: Iterable[str]) -> tuple[str, ...]:
    """Upper-case, de-duplicated region codes, refusing any libphonenumber does not know.

    A typo ("UK" for "GB") would otherwise silently turn off redaction of that country's
    national numbers, so it fails at start-up instead.
    """
    normalised: list[str] = []
    for region in regions:
        code = region.strip().upper()
        if code not in SUPPORTED_REGIONS:
            raise ValueError(f"unknown phone region {region!r} (use ISO 3166 codes like 'GB')")
        if code not in normalised:
            normalised.append(code)
    return tuple(normalised)


@dataclass(frozen=True, slots=True)
class PiiRedactor:
    """Replace emails, IBANs, card numbers, SSNs and phone numbers with placeholders.

    Callable as ``Callable[[str], str]`` (``graph.ports.Redactor``). ``regions`` are ISO 3166
    codes whose national phone formats are recognised; international numbers (``+CC …``) are
    recognised regardless.
    """

    regions: tuple[str, ...] = DEFAULT_REGIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "regions", _normalise_regions(self.regions))

    def __call__(self, text: str) -> str:
        if not text:
            return text
        text = _EMAIL.sub("[EMAIL]", text)
        text = _IBAN.sub(_ibans, text)
        text = _CARD.sub(_cards, text)
        text = _SSN.sub("[SSN]", text)
        return self._phones(text)

    def _phones(self, text: str) -> str:
        """Redact valid phone numbers of any configured region (or in international form).

        A match must be a *valid* number (in an allocated range of its plan, not merely the
        right length). Written internationally (``+CC`` or an exit code) that is enough, in
        any grouping. A national-form match needs more, because lists of sizes, dates,
        scores and part numbers are often valid somewhere: see :func:`_national_ok`.
        Spans found for several regions are merged.
        """
        if not _MAYBE_PHONE.search(text):
            return text
        spans: list[tuple[int, int]] = []
        for region in self.regions:
            home = country_code_for_region(region)
            for match in PhoneNumberMatcher(text, region, leniency=Leniency.VALID):
                raw = match.raw_string
                international = raw.lstrip("( ").startswith("+") or (
                    match.number.country_code != home
                )
                if international or _national_ok(match.number, raw, region):
                    spans.append((match.start, match.end))
        if not spans:
            return text
        spans.sort()
        merged = [spans[0]]
        for start, end in spans[1:]:
            last_start, last_end = merged[-1]
            if start <= last_end:
                merged[-1] = (last_start, max(last_end, end))
            else:
                merged.append((start, end))
        out, pos = [], 0
        for start, end in merged:
            out += [text[pos:start], "[PHONE]"]
            pos = end
        out.append(text[pos:])
        return "".join(out)


def make_redactor(regions: Iterable[str] = DEFAULT_REGIONS) -> Callable[[str], str]:
    """The redactor for these phone regions (``settings.pii_regions``); raises on unknown ones."""
    return PiiRedactor(tuple(regions))


_DEFAULT: Final = PiiRedactor()


def redact(text: str) -> str:
    """Redact with the default regions (:data:`DEFAULT_REGIONS`); see :class:`PiiRedactor`."""
    return _DEFAULT(text)
