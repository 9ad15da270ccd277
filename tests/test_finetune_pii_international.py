"""The sanitizer on international PII (addresses, phones, cards, IBANs, names) and the look-alikes it keeps.

Examples are written in the formats of the countries named, not taken from a generator: a test that
passes here says the shape is handled, whatever list a name or street came from.
"""

from __future__ import annotations

import pytest

from finetune.pii.sanitizer import Sanitizer


@pytest.fixture(scope="module")
def sanitizer() -> Sanitizer:
    return Sanitizer()


def _clean(sanitizer: Sanitizer, text: str) -> str:
    return sanitizer.sanitize_texts([text])[0][0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I live at Hauptstraße 5, 10115 Berlin now", "I live at [ADDRESS_1] now"),
        ("Send it to Kaiserstrasse 12\n60311 Frankfurt am Main.", "Send it to [ADDRESS_1]."),
        ("new place: Keizersgracht 221\n1016 DV Amsterdam", "new place: [ADDRESS_1]"),
        ("It is Mannerheimintie 7 B 12, 00100 Helsinki.", "It is [ADDRESS_1]."),
        ("deliver to ul. Marszałkowska 84/92, 00-514 Warszawa", "deliver to [ADDRESS_1]"),
        ("Address: Váci utca 15.\nH-1052 Budapest", "Address: [ADDRESS_1]"),
        ("at 12 rue de la Paix, 75002 Paris", "at [ADDRESS_1]"),
        ("Via Roma, 7\n20121, Milano (MI)", "[ADDRESS_1]"),
        ("Calle Mayor 10 Piso 3, Madrid, 28013", "[ADDRESS_1]"),
        ("Rua Augusta, 88\n1100-053 Lisboa", "[ADDRESS_1]"),
        ("Storgatan 3\n114 51 Stockholm", "[ADDRESS_1]"),
        ("Vesterbrogade 8, 1620 København", "[ADDRESS_1]"),
        ("1600 Pennsylvania Avenue NW, Suite 200\nWashington, DC 20500", "[ADDRESS_1]"),
        ("Flat 4, 22 Baker Street\nLondon NW1 6XE", "[ADDRESS_1]"),
        ("PSC 8071, Box 0991\nAPO AP 43303", "[ADDRESS_1]"),
        ("I live at с. Арсеньев, пер. Крылова, д. 6, 167774", "I live at [ADDRESS_1]"),
        ("my postcode is 3011 Bern, near the station", "my postcode is [ADDRESS_1], near the station"),
    ],
)
def test_addresses_in_many_formats(sanitizer: Sanitizer, text: str, expected: str) -> None:
    assert _clean(sanitizer, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("call 0177-763170 after five", "call [PHONE_1] after five"),
        ("Between 9 and 5 I am on 387.405.4790.", "Between 9 and 5 I am on [PHONE_1]."),
        ("try (045) 8222867", "try [PHONE_1]"),
        ("work line 217-977-6317x066, home", "work line [PHONE_1], home"),
        ("Still waiting, 29 21 93 59", "Still waiting, [PHONE_1]"),
        ("ring me on +36 47 833-5304 x3886", "ring me on [PHONE_1]"),
        ("+90(962)803-0457x8596 is my cell", "[PHONE_1] is my cell"),
        ("tel. 0316/06043029", "tel. [PHONE_1]"),
        ("Perhaps 001-893-490-9846x8902?", "Perhaps [PHONE_1]?"),
        ("my order #95682778 never arrived. mobile: 21776989.", "my order #95682778 never arrived. mobile: [PHONE_1]."),
        ("My number is +43 73248031079 x6546.", "My number is [PHONE_1]."),  # not a Luhn-valid "card"
        ("the ticket number for the studio. 1283104957", "the ticket number for the studio. 1283104957"),
    ],
)
def test_phones_in_national_formats(sanitizer: Sanitizer, text: str, expected: str) -> None:
    assert _clean(sanitizer, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("paid with 676299500444 yesterday", "paid with [CARD_1] yesterday"),  # Maestro, 12 digits
        ("jcb 180059974104646", "jcb [CARD_1]"),
        ("card 3542352854208497", "card [CARD_1]"),
        ("visa 4332243173637088175", "visa [CARD_1]"),  # 19 digits
        ("refund to gb13 qkau 7703 7035 9885 10 please", "refund to [IBAN_1] please"),
        ("iban de89370400440532013000", "iban [IBAN_1]"),
        ("IBAN: BE28 0219 4538 8720 card number 3511042435418262.", "IBAN: [IBAN_1] card number [CARD_1]."),
    ],
)
def test_cards_and_ibans(sanitizer: Sanitizer, text: str, expected: str) -> None:
    assert _clean(sanitizer, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order ORD-2024-150078 shipped",
        "fixed in build 19.0.16523.808 and version 5.12.3",
        "It cost €1.299,00 or $1,249.99 on 2024-03-15 at 10:22:31",
        "timestamp 2024-03-15T10:22:31Z, tracking 1Z999AA10123456784",
        "tracking RR218389107CN, invoice INV-336008, ticket 4829103",
        "order #639017666582 and case number 12345678",  # a Luhn-valid 12-digit order number
        "2 x 500 ml for the Galaxy S23 Ultra and the ThinkPad X1 Carbon",
        "since 2024 Black Friday deal, 250 g is on its way",
        "Level 12 Way too slow on PS4 since the 1.50 update",
        "the courier went to 12.",
        "my SSID is 2019-11-05 and the server 10.0.12.7 is down",
    ],
)
def test_look_alikes_are_kept(sanitizer: Sanitizer, text: str) -> None:
    cleaned = _clean(sanitizer, text)
    kept_ip = text.replace("10.0.12.7", "[IP_1]")  # an IP is PII here: the rest must stay
    assert cleaned in (text, kept_ip)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi, my name is Jón Sigurðsson and my order is late", "Hi, my name is [NAME_1] and my order is late"),
        ("This is Guðrún Jónsdóttir.", "This is [NAME_1]."),
        ("hello, this is Kovács Péter.", "hello, this is [NAME_1]."),
        ("I'm Tanaka Yumiko and", "I'm [NAME_1] and"),
        ("my name's dariusz żelazo, my parcel", "my name's [NAME_1], my parcel"),
        ("Dear Ms. Nowakowska, thanks", "Dear Ms. [NAME_1], thanks"),
        ("Thank you, jiří. Your refund", "Thank you, [NAME_1]. Your refund"),
        ("Regards,\nBrian J. Ali", "Regards,\n[NAME_1]"),
        ("Best regards, Vieira", "Best regards, [NAME_1]"),
        ("Please reply soon\nrespectfully\nMirela Dobrescu", "Please reply soon\nrespectfully\n[NAME_1]"),
        ("hi im pedro and my login fails", "hi im [NAME_1] and my login fails"),
        ("I passed this to my colleague Agnieszka Wiśniewska.", "I passed this to my colleague [NAME_1]."),
        ("Приветствую, меня зовут Агафья. My name is Агафья Абрамова", None),
        ("Thanks for waiting ^KateMorrow", "Thanks for waiting ^[NAME_1]"),
    ],
)
def test_names_from_many_locales(sanitizer: Sanitizer, text: str, expected: str | None) -> None:
    cleaned = _clean(sanitizer, text)
    if expected is None:  # Cyrillic: the name after the English cue goes, wherever else it stands
        assert "Агафья" not in cleaned and "Абрамова" not in cleaned
    else:
        assert cleaned == expected


def test_a_name_is_one_placeholder_across_the_conversation(sanitizer: Sanitizer) -> None:
    texts, counts = sanitizer.sanitize_texts(
        ["Hi, my name is Jón Sigurðsson.", "Thanks Jón, and who is Anna?", "jón again: still broken"]
    )
    assert texts[0] == "Hi, my name is [NAME_1]."
    assert texts[1].startswith("Thanks [NAME_1],")
    assert texts[2] == "[NAME_1] again: still broken"
    assert counts["NAME"] >= 3


@pytest.mark.parametrize(
    "text",
    [
        "Can I use Apple Cash in Canada?",
        "Best regards from the Premium Plan team",
        "We fly to Washington next month",
        "Thanks @Apple and @GoogleUK, fixed by @Ask_Spectrum",
        "Go team! thanks. Go Bruins",
        "Check https://support.example-games.com/articles/360099812345/Online-Connection-Troubleshooting-for-Console",
    ],
)
def test_words_names_and_brands_that_stay(sanitizer: Sanitizer, text: str) -> None:
    assert _clean(sanitizer, text) == text


def test_a_person_with_a_brand_in_the_handle_is_still_redacted(sanitizer: Sanitizer) -> None:
    assert _clean(sanitizer, "ask @applefan92 or @xbox_gamer") == "ask [HANDLE_1] or [HANDLE_2]"
