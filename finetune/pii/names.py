"""Person names: a gazetteer plus the cues people use around names.

No named-entity model that runs offline from a PyPI package was usable here (spaCy's models are not on
PyPI; GLiNER and Flair download weights at run time), so names are found by:

1. a gazetteer of first names and surnames from 24 locales of Faker's person providers (a well-kept PyPI
   package), used as a capitalised word that is a first name and not also an everyday word;
2. cues that make any capitalised word a name: greetings and thanks ("Hi Tobias,", "thanks Priya"),
   introductions ("my name is ...", "this is Dana from ..."), titles ("Mr. Okafor"), relations ("my
   husband Tom") and sign-offs ("^QV", "- Maria", "Regards,\\nAnna Berg");
3. extension to the following surname ("Sarah Connor", "[NAME_1] Okafor");
4. the sanitizer then redacts every other mention of a found name in the same conversation.

It misses unusual names without a cue, and a cue before a capitalised non-name ("Thanks Obama") is taken
as a name: the evaluation in BENCHMARKS.md gives the figures.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from functools import lru_cache

from finetune.pii.ambiguous_names import AMBIGUOUS_NAMES, NEVER_NAMES
from finetune.pii.spans import Span

GAZETTEER_LOCALES = (
    "en_US",
    "en_AU",
    "de_AT",
    "de_CH",
    "fr_CA",
    "nl_BE",
    "es_CO",
    "is_IS",
    "ja_JP",
    "ru_RU",
    "uk_UA",
    "bg_BG",
    "el_GR",
    "zh_CN",
    "ko_KR",
    "en_GB",
    "en_IN",
    "en_IE",
    "en_NZ",
    "de_DE",
    "fr_FR",
    "es_ES",
    "es_MX",
    "it_IT",
    "pt_BR",
    "pt_PT",
    "nl_NL",
    "pl_PL",
    "sv_SE",
    "tr_TR",
    "id_ID",
    "ga_IE",
    "da_DK",
    "no_NO",
    "fi_FI",
    "cs_CZ",
    "hu_HU",
    "ro_RO",
)

# A word not glued to digits or underscores: "DE89" and "user_42" are ids, not names.
WORD = re.compile(r"(?<![\w])[^\W\d_][^\W\d_'’-]*(?:['’-][^\W\d_'’-]*)*(?![\d_])")
# Surname endings that mark a capitalised word as a family name in many languages: Icelandic patronymics,
# Slavic, Baltic, Romanian, Turkish, Greek, Georgian, Armenian forms.
_SURNAME_ENDING = re.compile(
    r"(?i)(?:sson|sdóttir|sdottir|dóttir|dottir|ová|ova|ová|ski|ska|cki|cka|dzki|dzka|wicz|czyk|czak|enko|"
    r"ienko|uk|chuk|iuk|vić|vič|ić|ič|ovich|evich|ovna|evna|ov|ev|in|ina|aitė|ytė|ienė|ūtė|ius|ait|ais|"
    r"escu|eanu|oğlu|oglu|opoulos|akis|idis|shvili|dze|yan|ian|sen|son|berg|ström|qvist|lund|mann|"
    r"ler|auer|inger|stein|ez|es|aki|ata|oto|ura|ita|awa|ama|uchi|moto|naka|mura)$"
)
_POSSESSIVE = re.compile(r"['’]s?$")
_CONTRACTION = re.compile(r"(?i)['’](?:d|ll|re|ve|m|t)$|n['’]t$")
_TITLES = frozenset(
    """
    mr mrs ms miss mx dr prof sir madam mister señor sr sra herr frau mme mlle m
    """.split()  # noqa: SIM905 - a word list reads better as text
)
_GREETINGS = re.compile(
    r"(?i)(?:^|[\s,.!?(])(?:hi|hello|hey|heya|hiya|dear|thanks|thank\s+you|thx|ty|cheers|morning|good\s+morning|"
    r"good\s+afternoon|good\s+evening|evening|welcome|sorry|bye|goodbye|greetings|howdy|ok|okay|great|congrats|"
    r"appreciate\s+it|no\s+worries)[\s,!.:-]*$"
)
_INTRODUCTIONS = re.compile(
    r"(?i)(?:^|\W)(?:my\s+name\s+is|my\s+name's|name\s+is|name:|names?\s+are|this\s+is|it's|it\s+is|i\s+am|"
    r"i'm|im|call\s+me|named|called|ask\s+for|speak\s+(?:to|with)|spoke\s+(?:to|with)|speaking\s+(?:to|with)|"
    r"talked?\s+(?:to|with)|chatted\s+with|account\s+holder|cardholder|signed|regards|from|and|cc|attn:?|to|"
    r"by|for|"
    # Relations count after a possessive only: "my husband Tom", not "YouTube Partner Program".
    r"(?:my|your|our|his|her|their|the)\s+(?:agent|rep|representative|colleague|manager|supervisor|husband|"
    r"wife|son|daughter|mom|mum|dad|mother|father|brother|sister|friend|partner|boyfriend|girlfriend|"
    r"customer))\s*,?\s*$"
)
# Weak introductions ("I'm", "this is", "from", "and") need the word to look like a name too.
_WEAK_INTRODUCTIONS = re.compile(r"(?i)(?:^|\W)(?:it's|it\s+is|i\s+am|i'm|im|this\s+is|from|and|to|by|for)\s*,?\s*$")
# Cues after which whatever capitalised words follow are the name, surname included.
_NAMING_CUE = re.compile(r"(?i)(?:name\s+is|name's|name:|names?\s+are|call\s+me|named|called|signed)\s*,?\s*$")
# "^QV", "*CD", "- Maria", "_Nell", "/GH" at the end of a message, before an optional "2/3" part counter.
_SIGN_OFF = re.compile(
    r"(?:^|[\s.!?)])(?:[\^*~/_]|[-–—]\s?)\s?([^\W\d_a-z][^\W\d_A-Z]+(?:\s?[^\W\d_a-z][^\W\d_A-Z]+)?|[A-Z]{2,3})"
    r"\s*[.!]?"
    r"(?:\s+\d/\d)?\s*$"
)
_CLOSING = (
    r"(?:regards|best|best\s+wishes|kind\s+regards|many\s+thanks|thanks|thank\s+you|cheers|sincerely|"
    r"warmly|take\s+care|talk\s+soon|yours|greetings|saludos|grüße|gruß|groeten|cordialement|pozdrawiam|"
    r"üdvözlettel|hälsningar|mvh|terveisin|respectfully|love|xoxo|thx|ty)"
)
# The name after a closing word at the end of a message, on the next line or the same one, in any case:
# "Regards,\nAnna Berg", "Best regards, Vieira", "Cheers, ayu".
_CLOSING_LINE = re.compile(
    r"(?i:" + _CLOSING + r")(?:,[ \t]*|[,.!]?[ \t]*\n+[ \t]*)"
    r"([^\W\d_][^\W\d_'’-]+(?:[ \t](?:[^\W\d_]\.[ \t])?[^\W\d_][^\W\d_'’-]+){0,2})[ \t]*[.!]?\s*$"
)
_AFTER_NAME_PLACEHOLDER = re.compile(r"\[NAME_\d+\] ([A-Z][a-zà-ÿ'-]+)")
# Words that start sentences and are never surnames, for the check after a name placeholder.
_SENTENCE_WORDS = frozenset(
    """
    let here there what when where why how who if as at in on for from with welcome best regards kind cheers
    hope said says wrote writes asked told called emailed replied will would could should can did does has
    have had is was are were do please thanks thank sorry yes no ok okay and but or so also just then now
    """.split()  # noqa: SIM905 - a word list reads better as text
)
_PARTICLES = frozenset(
    """
    van von de da del della der den di du le la bin al o'
    """.split()  # noqa: SIM905 - a word list reads better as text
)
# After a greeting these are not names, however they are capitalised.
_NOT_NAMES_AFTER_CUE = NEVER_NAMES | frozenset(
    """
    good great nice happy sure cool awesome quick question issue problem urgent need want they them he she
    him hers its these those program
    there all team everyone guys folks again so for you sir madam both y'all friend mate buddy dear
    support a an the i we it this that is was not just in on at to with any my your our their his her me
    us very much lot lots but and or if please pls plz ok okay yes no hello hi hey thanks thank morning
    afternoon evening night day customer care service staff people man bro dude sis fam love hun babe
    honey anyway anyways though tho now then still also too ahead advance everybody anyone someone
    nothing everything bot human guy ma'am maam mr mrs ms dr sorry update info reply response help what
    how why when where who which can could would will should do does did have has had am are be been
    being get got from of by about as best regards kind cheers ship send refund tel tele telephone phone
    mobile email mail address card iban account order ticket case please let know here there back soon
    sincerely warmly yours take care talk best wishes many thank greetings meanwhile today tomorrow
    yesterday again more info information details below above attached following right wrong still
    again something anything everything someone anyone one two three first last next new old same other
    really actually please kindly unfortunately hopefully regarding re fw fwd subject dear sir madam
    call ring text send check try see look let make take give get keep find tell ask contact reach
    message write reply click visit open close use sign log reset confirm note sure done perfect
    yesterday tonight tomorrow waiting looking trying having getting still sent received ordered
    between before after during since until within without about around
    """.split()  # noqa: SIM905 - a word list reads better as text
)


@lru_cache(maxsize=1)
def gazetteer() -> tuple[frozenset[str], frozenset[str]]:
    """(first names, surnames), lower-cased, from Faker's person providers; loaded once per process."""
    first: set[str] = set()
    last: set[str] = set()
    for locale in GAZETTEER_LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{locale}").Provider
        except ImportError:  # a locale dropped by a future Faker: the others still work
            continue
        for attribute in (
            "first_names",
            "first_names_male",
            "first_names_female",
            "first_names_nonbinary",
            "first_romanized_names",  # ja_JP: "Haruto", as people write it in a Latin-script chat
            "middle_names",  # is_IS
        ):
            first.update(name.lower() for name in getattr(provider, attribute, ()) or ())
        for attribute in ("last_names", "last_romanized_names", "last_names_female", "last_names_male"):
            last.update(name.lower() for name in getattr(provider, attribute, ()) or ())
    return frozenset(n for n in first if len(n) > 1), frozenset(n for n in last if len(n) > 1)


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip(" \t")
    return not before or before[-1] in ".!?\n:"


def _bare(word: str) -> str:
    return _POSSESSIVE.sub("", word)


def _is_contraction(word: str) -> bool:
    """ "We'd", "They're", "Don't": never a name, whatever the cue before it."""
    return bool(_CONTRACTION.search(word))


def _is_capitalised(word: str) -> bool:
    return word[:1].isupper() and not (len(word) > 3 and word.isupper())


def _name_end(text: str, tokens: list[re.Match[str]], index: int, *, cued: bool = False) -> int:
    """Extend a name at tokens[index] over following surnames and particles; return the end offset.

    After a cue ("my name is Oluwaseun Adeyemi") any capitalised word extends it, not only known surnames.
    """
    first_names, surnames = gazetteer()
    end = tokens[index].start() + len(_bare(tokens[index].group(0)))
    if _bare(tokens[index].group(0)) != tokens[index].group(0):
        return end  # "Sarah's" ends the name
    lower_case = not _is_capitalised(tokens[index].group(0))
    confirmed = end
    for nxt in tokens[index + 1 : index + 4]:
        gap = text[end : nxt.start()]
        if gap not in (" ", "  "):
            break
        word = _bare(nxt.group(0))
        lower = word.lower()
        if len(word) == 1 and (word.isupper() or lower_case) and text[nxt.end() : nxt.end() + 2] == ". ":
            end = nxt.end() + 1  # a middle initial ("Brian J. Ali") counts only if a name follows it
            continue
        known = lower in surnames or lower in first_names
        shaped = _is_capitalised(word) or (lower_case and word.islower() and (known or cued))
        if lower in _PARTICLES or (
            shaped
            and (known or cued or _SURNAME_ENDING.search(word) is not None)
            and lower not in _NOT_NAMES_AFTER_CUE
            and lower not in NEVER_NAMES
            and (lower not in AMBIGUOUS_NAMES - surnames or cued)
        ):
            end = confirmed = nxt.start() + len(word)
            if word != nxt.group(0):
                break
        else:
            break
    end = confirmed
    # A trailing particle ("Maria de") is not part of the name.
    while text[:end].rsplit(" ", 1)[-1].lower() in _PARTICLES and " " in text[:end]:
        end = len(text[:end].rsplit(" ", 1)[0])
    return end


def find_names(text: str) -> Iterator[Span]:
    first_names, surnames = gazetteer()
    tokens = list(WORD.finditer(text))
    for index, token in enumerate(tokens):
        word = _bare(token.group(0))
        lower = word.lower()
        if len(word) < 2 or lower in _TITLES or lower in _PARTICLES or _is_contraction(token.group(0)):
            continue
        before = text[max(0, token.start() - 40) : token.start()]
        previous = tokens[index - 1].group(0).lower().rstrip(".") if index else ""
        capitalised = _is_capitalised(word)
        is_first = lower in first_names
        cued = False
        if previous in _TITLES and capitalised and text[tokens[index - 1].end() : token.start()].strip(". ") == "":
            cued = True
        elif _GREETINGS.search(before) and lower not in _NOT_NAMES_AFTER_CUE:
            cued = capitalised or is_first or lower in surnames
        elif _INTRODUCTIONS.search(before) and lower not in _NOT_NAMES_AFTER_CUE:
            weak = _WEAK_INTRODUCTIONS.search(before) is not None
            lower_name = is_first and len(word) > 2 and lower not in AMBIGUOUS_NAMES
            cued = (capitalised or lower_name or (_NAMING_CUE.search(before) is not None and len(word) > 2)) and (
                not weak or ((is_first or lower in surnames) and lower not in AMBIGUOUS_NAMES)
            )
        plain = (
            capitalised and is_first and len(word) >= 3 and lower not in AMBIGUOUS_NAMES and lower not in NEVER_NAMES
        )
        # An everyday word that is a first name counts when a surname follows: "Grace Hopper", "Will Smith".
        if not (cued or plain) and capitalised and is_first and index + 1 < len(tokens):
            nxt = _bare(tokens[index + 1].group(0))
            plain = (
                _is_capitalised(nxt)
                and nxt.lower() in surnames
                and nxt.lower() not in AMBIGUOUS_NAMES
                and text[token.end() : tokens[index + 1].start()] == " "
            )
        if not (cued or plain) and capitalised and index + 1 < len(tokens) and len(word) >= 3:
            nxt = _bare(tokens[index + 1].group(0))
            gap = text[token.end() : tokens[index + 1].start()]
            plain = (
                gap == " "
                and _is_capitalised(nxt)
                and len(nxt) >= 4
                and lower not in _NOT_NAMES_AFTER_CUE
                and lower not in NEVER_NAMES
                and nxt.lower() not in _NOT_NAMES_AFTER_CUE
                and (is_first or lower in surnames)
                and (_SURNAME_ENDING.search(nxt) is not None or nxt.lower() in first_names)
                and not _sentence_start(text, token.start())
            )
        if cued or plain:
            end = _name_end(text, tokens, index, cued=cued)
            yield Span(token.start(), end, "NAME", " ".join(text[token.start() : end].lower().split()))
    for pattern in (_SIGN_OFF, _CLOSING_LINE, _AFTER_NAME_PLACEHOLDER):
        for match in pattern.finditer(text):
            word = match.group(1)
            initials = pattern is _SIGN_OFF and word.isupper()  # "*CD", "^EF": an agent's initials
            # After "[NAME_1] " any capitalised word but a common one is the surname ("[NAME_1] Okafor").
            first_word = word.split()[0].lower()
            if ((word.lower() in _NOT_NAMES_AFTER_CUE or first_word in _NOT_NAMES_AFTER_CUE) and not initials) or (
                pattern is _AFTER_NAME_PLACEHOLDER and word.lower() in AMBIGUOUS_NAMES | _SENTENCE_WORDS
            ):
                continue
            yield Span(match.start(1), match.end(1), "NAME", " ".join(word.lower().split()))
