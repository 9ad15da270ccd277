"""The sanitizer on labelled cases of every PII type, the hard ones included."""

from __future__ import annotations

from pathlib import Path

import pytest

from finetune.conversation import Conversation, Turn
from finetune.pii.sanitizer import Sanitizer
from finetune.pii.scoring import parse_labelled, score_sanitizer

FIXTURES = Path(__file__).parent / "fixtures" / "finetune"


@pytest.fixture(scope="module")
def sanitizer() -> Sanitizer:
    return Sanitizer()


def _clean(sanitizer: Sanitizer, text: str) -> str:
    return sanitizer.sanitize_texts([text])[0][0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to priya.raman84@gmail.com", "write to [EMAIL_1]"),
        ("or jdoe (at) company (dot) com", "or [EMAIL_1]"),
        ("call (415) 555-0132 now", "call [PHONE_1] now"),
        ("ring +44 20 7946 0958", "ring [PHONE_1]"),
        ("ring 020 7946 0958", "ring [PHONE_1]"),
        ("Berlin: +49 30 901820", "Berlin: [PHONE_1]"),
        ("my mobile is +91 98765 43210", "my mobile is [PHONE_1]"),
        ("text me at 0412 345 678", "text me at [PHONE_1]"),
        ("card 4111 1111 1111 1111 ok", "card [CARD_1] ok"),
        ("amex 378282246310005", "amex [CARD_1]"),
        ("to DE89 3704 0044 0532 0130 00 please", "to [IBAN_1] please"),
        ("SSN 219-09-9999.", "SSN [SSN_1]."),
        ("NI number JG 10 37 59 A", "NI number [NATIONAL_ID_1]"),
        ("router 192.168.1.254 and 2001:db8:85a3::8a2e:370:7334", "router [IP_1] and [IP_2]"),
        ("at 742 Evergreen Terrace, Springfield, OR 97403.", "at [ADDRESS_1]."),
        ("to 221B Baker Street, London NW1 6XE please", "to [ADDRESS_1] please"),
        ("cc @jenny_from_accounts and <@U024BE7LH>", "cc [HANDLE_1] and [HANDLE_2]"),
        ("go to https://x.example.com/reset?token=8f14e45fceea167a", "go to [URL_1]"),
        ("key sk-proj-4fG7hJ9kL2mN5pQ8rS1tU3vW6xY0zA", "key [SECRET_1]"),
        ("xoxb-2048-4096-Zx9Yw8Vu7Ts6Rq5Po4 leaked", "[SECRET_1] leaked"),
        ("AKIAIOSFODNN7EXAMPLE", "[SECRET_1]"),
        ("ghp_16C7e42F292c6912E7710c838347Ae178B4a", "[SECRET_1]"),
        ("password: Tr0ub4dor&3", "password: [SECRET_1]"),
        ("Hi Tobias, sorry! ^QV", "Hi [NAME_1], sorry! ^[NAME_2]"),
    ],
)
def test_each_type_is_replaced_by_a_typed_placeholder(sanitizer: Sanitizer, text: str, expected: str) -> None:
    assert _clean(sanitizer, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4111 1111 1111 1112 fails Luhn",  # must not be redacted as a card
        "Reference 1234 5678 9012 3456 is your claim id",
        "Is DE12 3456 7890 1234 5678 90 a valid IBAN?",
        "app version 5.12.0.3 on iOS 13.4.1",
        "Customer service number 1-800-275-2273 doesn't pick up",  # toll-free: a business line
        "The help article https://support.apple.com/en-us/HT201354 didn't help",
        "See https://web.archive.org/web/20200401225851/https://support.google.com/youtube/answer/1",
        "Will this be fixed in May? I'd hope so.",
        "Mark as read doesn't work, and Grant access fails too.",
        "I reset my password twice but the password is wrong.",
        "Hello team, Apple Pay fails on my iPhone.",
    ],
)
def test_hard_negatives_stay(sanitizer: Sanitizer, text: str) -> None:
    assert _clean(sanitizer, text) == text


def test_placeholders_are_consistent_within_a_conversation(sanitizer: Sanitizer) -> None:
    texts, counts = sanitizer.sanitize_texts(
        [
            "My name is Sarah Connor, phone (415) 555-0132, email s.connor@example.com",
            "Hi Sarah, we'll call 415.555.0132 and write to S.Connor@example.com. ^JD",
            "thanks sarah! Connor here again, my colleague Dana Scully agrees",
        ]
    )
    assert texts[0] == "My name is [NAME_1], phone [PHONE_1], email [EMAIL_1]"
    assert texts[1] == "Hi [NAME_1], we'll call [PHONE_1] and write to [EMAIL_1]. ^[NAME_2]"
    assert texts[2] == "thanks [NAME_1]! [NAME_1] here again, my colleague [NAME_3] agrees"
    assert counts["NAME"] == 6 and counts["PHONE"] == 2 and counts["EMAIL"] == 2


def test_numbering_restarts_per_conversation_and_skips_existing_placeholders(sanitizer: Sanitizer) -> None:
    assert sanitizer.sanitize_texts(["Hi Oliver"])[0] == ["Hi [NAME_1]"]
    # The input already has [NAME_1] (a pre-redacted export): a new name must not reuse its number,
    # and a capitalised surname right after a name placeholder is a name.
    texts, _ = sanitizer.sanitize_texts(["[NAME_1] Okafor wrote", "Hi Oliver"])
    assert texts == ["[NAME_1] [NAME_2] wrote", "Hi [NAME_3]"]


def test_sanitizing_twice_changes_nothing(sanitizer: Sanitizer) -> None:
    once, _ = sanitizer.sanitize_texts(["Hi Priya, call +44 20 7946 0958 or mail p@x.io, password: hunter22"])
    twice, counts = sanitizer.sanitize_texts(once)
    assert twice == once and not counts


def test_known_pii_from_metadata_is_redacted_everywhere(sanitizer: Sanitizer) -> None:
    conversation = Conversation(
        "c1",
        (Turn("user", "gamer_kid42 here, Ngozi set it up"), Turn("assistant", "Thanks! We'll sort it.")),
        known_pii=(("HANDLE", "gamer_kid42"), ("NAME", "Ngozi Adeyemi")),
    )
    result = sanitizer.sanitize_conversation(conversation)
    assert result.conversation.turns[0].text == "[HANDLE_1] here, [NAME_1] set it up"
    assert result.conversation.known_pii == () and result.conversation.turns[0].speaker == ""


def test_labelled_set_precision_and_recall(sanitizer: Sanitizer) -> None:
    """Floors under the measured figures (BENCHMARKS.md): a regression fails here."""
    for name in ("pii_labelled.jsonl", "pii_heldout.jsonl"):
        score = score_sanitizer(FIXTURES / name, sanitizer)
        for pii_type, entry in score.by_type.items():
            floor = 0.85 if pii_type == "NAME" else 1.0
            assert (entry.recall or 1.0) >= floor, (name, pii_type, entry)
            assert (entry.precision or 1.0) >= (0.9 if pii_type == "NAME" else 1.0), (name, pii_type, entry)
            if pii_type != "NAME":
                assert entry.leaked == 0


def test_parse_labelled() -> None:
    text, spans = parse_labelled("Hi {{NAME:Ana}}, mail {{EMAIL:a@b.io}}!")
    assert text == "Hi Ana, mail a@b.io!"
    assert [(text[s.start : s.end], s.pii_type) for s in spans] == [("Ana", "NAME"), ("a@b.io", "EMAIL")]
