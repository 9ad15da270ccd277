"""Pattern detectors: e-mails, URLs, secrets, IPs, SSNs and national ids, IBANs, cards, addresses, handles.

Checksums decide where a pattern alone would guess: cards must pass Luhn (``stdnum.luhn``) and IBANs the
ISO 13616 mod-97 check with the country's length (``stdnum.iban``), so an order number that merely has
16 digits stays.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlsplit

from stdnum import iban as stdnum_iban
from stdnum import luhn

from finetune.pii.addresses import find_addresses
from finetune.pii.ambiguous_names import NEVER_NAMES
from finetune.pii.spans import Span

# "name (at) example (dot) com" is written with spaces; a literal "." never is ("x@gmail.com. The").
_DOT = r"(?:\.|\s?(?:\(dot\)|\[dot\])\s?)"
EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]{1,64}\s?(?:@|\(at\)|\[at\])\s?[A-Za-z0-9-]{1,63}"
    r"(?:" + _DOT + r"[A-Za-z0-9-]{1,63})*" + _DOT + r"[A-Za-z]{2,24}\b"
)
URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"'\])]+|\b(?:https?\s?:\s?//)\S+", re.IGNORECASE)

# Prefixed tokens that providers document; these are secrets wherever they stand.
SECRET_TOKENS = re.compile(
    r"\b(?:"
    r"sk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"  # OpenAI
    r"|xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{10,}"  # Slack bot/user/app tokens
    r"|(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}"  # AWS access key ids
    r"|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,}"  # GitHub
    r"|glpat-[A-Za-z0-9_-]{20,}"  # GitLab
    r"|AIza[0-9A-Za-z_-]{35}"  # Google API keys
    r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"  # Stripe
    r"|eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"  # JWT
    r")"
)
PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL)
BEARER = re.compile(r"\bBearer\s+([A-Za-z0-9._~+/-]{16,}=*)")
# "password: hunter2", "my pin is 4512", "api_key=abc...": the value goes, the label stays (it is the tone).
SECRET_ASSIGNMENT = re.compile(
    r"(?i)(?<![?&/#=.])\b(?:password|passwd|pwd|passcode|pass\s?phrase|pin(?:\s?code)?|api[\s_-]?key"
    r"|secret(?:[\s_-]?key)?|access[\s_-]?token|auth[\s_-]?token|token|aws_secret_access_key|client[\s_-]?secret)"
    r"\s*(is\s*|was\s*|:|=|-)\s*[\"'`]?([^\s\"'`,;]{3,})"
)

_NOT_SECRETS = frozenset(
    frozenset(
        """
    wrong incorrect invalid correct right expired not being still too the my reset changed required
    missing blank empty same different case working accepted rejected locked weak strong saved stored
    long short fine ok okay also now just never always there here what that this it your sent needed
    shown hidden updated new old forgotten lost protected
    """.split()  # noqa: SIM905 - a word list reads better as text
    )
)

IPV4 = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\w.]*\d)"
)
IPV6 = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{1,4}:){2,7}(?::|[0-9A-Fa-f]{1,4})(?:[0-9A-Fa-f:]*)(?![\w:])")
VERSION_CUE = re.compile(
    r"(?i)\b(?:version|ver\.?|v|build|release|firmware|ios|android|beta|update|updated\s+to|patch)[\s(:]*$"
)

# US SSN: separated form always; 9 bare digits only after a cue, they are too often order numbers.
SSN = re.compile(r"\b(?!000|666|9\d\d)\d{3}([- ])(?!00)\d{2}\1(?!0000)\d{4}\b")
SSN_CUED = re.compile(r"(?i)\b(?:ssn|social\s+security(?:\s+(?:number|no\.?|#))?)\D{0,12}((?!000|666|9\d\d)\d{9})\b")
# UK National Insurance number.
NINO = re.compile(r"\b(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b")

# Case-insensitive: people type "de89 3704 ..." too.
IBAN = re.compile(r"(?i)(?<![\w])[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]{4}){2,7}(?:[ ]?[A-Z0-9]{1,4})?(?![\w])")
CARD = re.compile(r"(?<![\w+-])(?:\d[ -]?){11,18}\d(?![\w-])")  # "+43 7324..." is a phone
# "order 5412 7534 ..." or "ticket 639017666582": an id that happens to pass Luhn is not a card.
_NOT_CARD_CUE = re.compile(
    r"(?i)\b(?:order|ticket|case|ref(?:erence)?|tracking|invoice|serial|confirmation|booking|transaction|"
    r"imei|sku|id)\s*(?:number|no\.?|#|id)?\s*(?:is|:)?\s*#?\s*$"
)

HANDLE = re.compile(r"(?<![\w@.+-])@[A-Za-z0-9_](?:[A-Za-z0-9_.]{0,28}[A-Za-z0-9_])?")
# "my gamertag is xXsniperXx99", "PSN ID: kev_1987": a user name stated without "@". Only values with a
# digit or underscore: "my id is blocked" is prose.
ACCOUNT_NAME = re.compile(
    r"(?i)\b(?:user\s?name|user\s?id|gamer\s?tag|psn(?:\s+id)?|xbox\s+(?:live\s+)?id|epic\s+id|ign|"
    r"handle|screen\s?name|login|(?:my|account)\s+id)\s*(?:is|:|=)?\s*([A-Za-z][A-Za-z0-9_.-]{2,30})"
)
SLACK_MENTION = re.compile(r"<@[UW][A-Z0-9]+(?:\|[^>]*)?>|<!subteam\^[A-Z0-9]+(?:\|[^>]*)?>")

# URL parts that make a link personal or a credential: signed/tokenized query keys, user:pass@, long
# opaque path ids (a YouTube channel id, a reset link), profile pages of social networks.
_SENSITIVE_QUERY_KEYS = re.compile(
    r"(?i)^(?:.*token.*|.*key.*|sig|signature|auth.*|code|session.*|sid|password|pass|pwd|email|e-mail|user(?:name)?"
    r"|uid|id|ticket|hash|otp|reset.*|invite.*|X-Amz-.*|phone|name|account.*)$"
)
_SLUG = re.compile(r"[A-Za-z]{3,}-[A-Za-z]{2,}")
_OPAQUE_SEGMENT = re.compile(r"^(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[A-Za-z])[A-Za-z0-9_-]{16,}$")
_PROFILE_HOSTS = re.compile(
    r"(?i)(?:^|\.)(?:twitter\.com|x\.com|facebook\.com|fb\.com|instagram\.com|linkedin\.com|tiktok\.com"
    r"|youtube\.com|youtu\.be|twitch\.tv|t\.co|bit\.ly|paypal\.me|venmo\.com|cash\.app|wa\.me)$"
)
_PUBLIC_PROFILE_PATHS = re.compile(r"(?i)^/(?:help|support|about|legal|policies|hc)(?:/|$)")


def _url_is_sensitive(url: str) -> bool:
    try:
        parts = urlsplit(url if "://" in url else "http://" + url)
    except ValueError:
        return True  # unparseable: do not gamble
    host = parts.hostname or ""
    if parts.username or parts.password or "hooks.slack.com" in host:
        return True
    if any(_SENSITIVE_QUERY_KEYS.match(key) for key, _ in parse_qsl(parts.query, keep_blank_values=True)):
        return True
    if parts.fragment and ("token" in parts.fragment.lower() or "=" in parts.fragment):
        return True
    segments = [s for s in parts.path.split("/") if s]
    # A slug of words ("Online-Connection-Troubleshooting-for-Console") is a public article, not an opaque id.
    if any(_OPAQUE_SEGMENT.match(s) and not _SLUG.search(s) for s in segments):
        return True
    if _PROFILE_HOSTS.search(host) and segments and not _PUBLIC_PROFILE_PATHS.match(parts.path):
        return True
    return bool(EMAIL.search(url))


def _strip_trailing_punctuation(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1] in ".,;:!?)":
        end -= 1
    return end


def find_urls(text: str) -> Iterator[Span]:
    for match in URL.finditer(text):
        end = _strip_trailing_punctuation(text, match.start(), match.end())
        url = text[match.start() : end]
        if _url_is_sensitive(url.replace(" ", "")):
            yield Span(match.start(), end, "URL", url.lower())


def find_secrets(text: str) -> Iterator[Span]:
    for match in SECRET_TOKENS.finditer(text):
        yield Span(match.start(), match.end(), "SECRET", match.group(0))
    for match in PRIVATE_KEY.finditer(text):
        yield Span(match.start(), match.end(), "SECRET", match.group(0))
    for match in BEARER.finditer(text):
        yield Span(match.start(1), match.end(1), "SECRET", match.group(1))
    for match in SECRET_ASSIGNMENT.finditer(text):
        separator, value = match.group(1).strip(), match.group(2)
        if (value.startswith("[") and value.endswith("]")) or value.lower().rstrip(".!?") in _NOT_SECRETS:
            continue  # already a placeholder, or "the password is wrong"
        # "password: hunter" is a value; "password is gone" is prose, unless the word has a digit or symbol.
        if separator not in (":", "=") and value.isalpha():
            continue
        end = _strip_trailing_punctuation(text, match.start(2), match.end(2))
        if end > match.start(2):
            yield Span(match.start(2), end, "SECRET", text[match.start(2) : end])


def find_emails(text: str) -> Iterator[Span]:
    for match in EMAIL.finditer(text):
        yield Span(match.start(), match.end(), "EMAIL", re.sub(r"\s", "", match.group(0)).lower())


def find_ips(text: str) -> Iterator[Span]:
    for match in IPV4.finditer(text):
        if VERSION_CUE.search(text[max(0, match.start() - 12) : match.start()]):
            continue  # "version 1.2.3.4" is not an address
        yield Span(match.start(), match.end(), "IP", match.group(0))
    for match in IPV6.finditer(text):
        candidate = match.group(0)
        try:
            ipaddress.IPv6Address(candidate)
        except ValueError:
            continue
        if candidate.count(":") >= 2 and any(c.isalpha() or c == "0" for c in candidate):
            yield Span(match.start(), match.end(), "IP", candidate.lower())


def find_national_ids(text: str) -> Iterator[Span]:
    for match in SSN.finditer(text):
        yield Span(match.start(), match.end(), "SSN", re.sub(r"\D", "", match.group(0)))
    for match in SSN_CUED.finditer(text):
        yield Span(match.start(1), match.end(1), "SSN", match.group(1))
    for match in NINO.finditer(text):
        yield Span(match.start(), match.end(), "NATIONAL_ID", match.group(0).replace(" ", ""))


def _iban_checksum_ok(compact: str) -> bool:
    """ISO 13616 mod-97 alone: a few generators and banks' forms get the length of a country wrong, and
    a mistyped length still identifies the account holder."""
    rearranged = compact[4:] + compact[:4]
    try:
        return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1
    except ValueError:
        return False


def find_ibans(text: str) -> Iterator[Span]:
    for match in IBAN.finditer(text):
        groups = match.group(0).split(" ")
        # The pattern may take a following word ("... 8720 card"): try shorter readings too.
        for size in range(len(groups), 0, -1):
            value = " ".join(groups[:size])
            compact = value.replace(" ", "").upper()
            if sum(c.isdigit() for c in compact) < 8:
                break
            if stdnum_iban.is_valid(compact) or (15 <= len(compact) <= 34 and _iban_checksum_ok(compact)):
                yield Span(match.start(), match.start() + len(value), "IBAN", compact)
                break


# Issuer ranges: 1 (UATP, JCB 1800), 2 (Mastercard 2-series), 3 (Amex, JCB, Diners), 4 (Visa),
# 5 (Mastercard, Maestro), 6 (Maestro, Discover, UnionPay). Tweet ids and timestamps mostly start with 1.
def _card_shaped(digits: str) -> bool:
    if not 12 <= len(digits) <= 19 or not luhn.is_valid(digits):
        return False
    if len(digits) == 12:
        return digits[0] in "56"  # only Maestro issues 12 digits
    if digits[0] == "1":
        return len(digits) == 15 and digits.startswith(("1800", "1"))
    return digits[0] in "23456"


def find_cards(text: str) -> Iterator[Span]:
    for match in CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group(0))
        if _card_shaped(digits) and not _NOT_CARD_CUE.search(text[max(0, match.start() - 30) : match.start()]):
            yield Span(match.start(), match.end(), "CARD", digits)


# Company accounts are not people: "@Apple", "@GoogleUK", "@Ask_Spectrum", "@ChaseforBiz" stay, so the
# tone of "I tagged @Apple" survives. Only a brand word with a regional/support affix counts, never a
# brand inside a longer name ("@applefan92" is a person).
_BRANDS = NEVER_NAMES | frozenset(
    """
    att verizon tmobile sprint comcast xfinity jetblue southwest southwestair united americanair
    photoshop adobe lightroom wawa walmart target bestbuy hp dell lenovo samsung intel nvidia amd
    playstation nintendo steam epicgames twitch reddit twitter facebook instagram whatsapp tiktok
    linkedin snapchat pinterest discord slack github gmail outlook icloud wellsfargo bankofamerica
    citi amex visa mastercard fedex ups usps dhl hulu disney disneyplus hbo peacock minecraft mojang
    rockstargames rockstar xboxsupport appletv applemusic youtube youtubetv googleplay googlechrome
    """.split()  # noqa: SIM905 - a word list reads better as text
)
_BRAND_AFFIXES = re.compile(
    r"^(?:ask_?|team|hey|the)?(?P<brand>[a-z]+?)_?(?:support|help|care|cares|service|uk|us|usa|ca|au|in|"
    r"biz|forbiz|tv|chrome|news|official|app|play|store|games|gaming|plus|music|one|status|dev|de|fr|es|it)*$"
)


def _is_brand(handle: str) -> bool:
    lower = handle.lower()
    if lower in _BRANDS:
        return True
    match = _BRAND_AFFIXES.match(lower)
    return bool(match and match.group("brand") in _BRANDS)


def find_handles(text: str) -> Iterator[Span]:
    for match in HANDLE.finditer(text):
        if not _is_brand(match.group(0)[1:]):
            yield Span(match.start(), match.end(), "HANDLE", match.group(0)[1:].lower())
    for match in ACCOUNT_NAME.finditer(text):
        value = match.group(1)
        if any(c.isdigit() or c == "_" for c in value):
            yield Span(match.start(1), match.end(1), "HANDLE", value.lower())
    for match in SLACK_MENTION.finditer(text):
        yield Span(match.start(), match.end(), "HANDLE", match.group(0).split("|")[0].strip("<@>!").lower())


PATTERN_DETECTORS = (
    find_secrets,
    find_emails,
    find_urls,
    find_ips,
    find_national_ids,
    find_ibans,
    find_cards,
    find_addresses,
    find_handles,
)
