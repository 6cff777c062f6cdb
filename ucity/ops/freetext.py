"""Masking of obvious personal data in free text (privacy QA10 F3; PLAT-R10).

An event's `details`, an operator's status `note` and similar text are typed by people and often name a reporter,
a guardian or a missing person with their phone number. `mask_free_text` masks what can be recognised without
understanding the text:

* Korean phone numbers, as the structured masking does (`auth.mask_phone`: the last 4 digits stay): mobile
  (`010-1234-5678`, `010 1234 5678`, `010.1234.5678`, `01012345678`, `011-123-4567` ...), landline with an area
  code (`02-123-4567`, `(02) 1234-5678`, `031-123-4567`, `0311234567`), `070` and `050x` numbers, and the
  international forms (`+82 10 1234 5678`, `+82-10-1234-5678`, `+821012345678`, `+82 (0)2 123 4567`);
* resident (and foreigner) registration numbers, `YYMMDD-SNNNNNN` with or without the hyphen (every digit masked);
* e-mail addresses (`h*****@example.com`: the first letter and the domain stay).

It leaves alone what only looks like numbers: dates (`2026-12-07`, `2026.12.07`), times (`14:05:33`), case numbers
(`112-20260302-0001`), coordinates (`127.0276, 37.4979`), counts and amounts. A number that is part of a longer
chain of digits and separators is never a phone number (`(?<!\\d)(?<!\\d[-.])` ... `(?![-.]?\\d)`).

Names are not recognised (a Korean name is two or three syllables like any word): the text is masked, not
anonymised, and the unmasked text stays for `personal:read` (operators), whose reads of it are audited.
"""

from __future__ import annotations

import re
from typing import Any

from ucity.ops.auth import mask_phone

REDACTED = "[삭제됨 / redacted]"  # what a data subject's redaction leaves of a text (subjects.py)
_BEFORE = r"(?<![A-Za-z0-9])(?<!\d[-.])"  # not inside a word, a longer number or a chain of digit groups
_AFTER = r"(?!\d)(?![-.]\d)"
_SEP = r"[-. ]?"
# Korean numbers written nationally: mobile 01x, Seoul 02, other areas 0[3-6][1-5], 070 (internet), 050x (safe numbers)
_NATIONAL = rf"(?:\(0(?:1[016789]|2|[3-6][1-5]|70|50\d)\)\s?|0(?:1[016789]|2|[3-6][1-5]|70|50\d){_SEP})\d{{3,4}}{_SEP}\d{{4}}"
# +82, then the number without its leading 0 (some write it anyway, or as "(0)")
_INTERNATIONAL = rf"\+82{_SEP}(?:\(0\){_SEP}|0)?(?:1[016789]|2|[3-6][1-5]|70|50\d){_SEP}\d{{3,4}}{_SEP}\d{{4}}"
PHONE = re.compile(rf"(?:{_BEFORE}{_NATIONAL}|(?<![A-Za-z0-9+]){_INTERNATIONAL}){_AFTER}")
# YYMMDD-SNNNNNN: a real month and day, S 1-8 (residents 1-4, foreigners 5-8)
RRN = re.compile(rf"{_BEFORE}\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])(?:\s?-\s?)?[1-8]\d{{6}}{_AFTER}")
EMAIL = re.compile(r"(?<![A-Za-z0-9.%+-])([A-Za-z0-9][A-Za-z0-9._%+-]*)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})\b")


def _mask_rrn(match: re.Match[str]) -> str:
    return re.sub(r"\d", "*", match.group(0))


def _mask_email(match: re.Match[str]) -> str:
    local = match.group(1)
    return f"{local[0]}{'*' * max(len(local) - 1, 1)}@{match.group(2)}"


def mask_free_text(text: str) -> str:
    """`text` with phone numbers, registration numbers and e-mail addresses masked (module docstring); the rest as
    it is. `mask_free_text(t) != t` tells whether `t` held any of them."""
    if not text:
        return text
    text = EMAIL.sub(_mask_email, text)
    text = RRN.sub(_mask_rrn, text)
    return PHONE.sub(lambda m: mask_phone(m.group(0)), text)


def holds_personal(text: str) -> bool:
    """Whether `mask_free_text` would change `text`."""
    return bool(text) and mask_free_text(text) != text


def typed_length(name: str, text: str) -> dict[str, Any]:
    """What an audit line keeps of a typed text (a status or agency-report note, a linkage purpose or reason, a grant's
    purpose or revocation reason): `<name>Chars` (its length) and `<name>Masked` (whether it held personal data), never
    the text, which a data subject's redaction could not reach in the audit log; nothing for an empty one."""
    return {f"{name}Chars": len(text), f"{name}Masked": holds_personal(text)} if text else {}


def phones_in(text: str) -> list[str]:
    """The phone numbers `mask_free_text` recognises in `text`, as written (a data subject's search, subjects.py)."""
    return [match.group(0) for match in PHONE.finditer(text)] if text else []
