"""Street addresses in the formats of many countries.

An address is built from lines that each look like part of one, and the parts next to each other (on
one line with commas, or over several lines) are joined into one span:

- a street line: a house number and a street word in either order ("12 Baker Street", "Hauptstraße 5",
  "ul. Jesienna 896", "Via Loretta, 7", "Runebergintie 7", "rue de Lacroix"), optionally with an
  Apt/Suite/Flat/Unit/Piso fragment;
- a postcode next to a town ("10115 Berlin", "30-929 Stargard", "H-7752 Pécs", "1745 CI Melissant",
  "Springfield, IL 62704", "SW1A 1AA");
- military post ("PSC 8071, Box 0991", "APO AP 43303") and P.O. boxes;
- after an address cue ("I live at", "ship it to", "address:"), the rest of the line and the address-like
  lines below it, whatever their format (Indian, Japanese, Cyrillic addresses have no street word we know).

A postcode alone, a year before a word ("2024 Black Friday") or a house number without a street word stay.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from finetune.pii.spans import Span

_L = r"[^\W\d_]"  # any letter, any script
_CAP = r"[^\W\d_a-zß]"  # an upper-case letter (approximately: any letter that is not ASCII lower case)

# Street words written as their own word, in the languages of the customers we see.
_STREET_WORDS = (
    r"street|st|avenue|ave|av|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|place|pl|way|terrace|ter|"
    r"parkway|pkwy|highway|hwy|circle|cir|square|sq|crescent|cres|close|row|trail|trl|grove|gardens?|mews|"
    r"walk|hill|park|estate|plains?|radial|forges?|cove|run|roads|island|bridge|spurs?|rapids|stravenue|"
    r"arcade|crossing|expressway|freeway|junction|loop|manor|meadows?|mill|pass|pike|point|port|ridge|"
    r"route|shoals?|springs?|station|summit|throughway|tunnel|turnpike|union|valley|viaduct|view|villages?|"
    r"vista|wall|wells?|alley|bypass|causeway|centre|center|common|corners?|creek|dale|dam|divide|extension|"
    r"falls|ferry|fields?|flats?|fords?|forest|fork|fort|haven|heights|hollow|inlet|isle|keys?|knolls?|"
    r"lakes?|landing|lights?|lodge|mall|mission|motorway|mount|mountain|neck|orchard|oval|overpass|path|"
    r"pines?|plaza|prairie|ramp|ranch|rest|river|shore|skyway|spur|squares|stream|streets|trace|track|"
    r"trafficway|underpass|ville|wy|quay|parade|broadway|esplanade|promenade|highroad|outlook|"
    r"strasse|straße|str|gasse|weg|allee|platz|ring|damm|chaussee|ufer|"
    r"laan|straat|gracht|plein|dreef|steeg|singel|kade|hof|pad|"
    r"rue|avenue|boulevard|bd|bld|chemin|allée|impasse|place|quai|route|cours|passage|montée|rang|"
    r"via|viale|piazza|piazzale|corso|largo|strada|vicolo|contrada|borgo|canale|incrocio|rotonda|"
    r"calle|avenida|paseo|plaza|camino|carrera|callejón|callejon|glorieta|ronda|travesía|acceso|"
    r"privada|peatonal|corredor|circuito|cerrada|andador|prolongación|retorno|"
    r"rua|travessa|alameda|praça|praca|estrada|rodovia|ladeira|vila|beco|sítio|sitio|lagoa|recanto|"
    r"conjunto|quadra|núcleo|vereda|viela|"
    r"ulica|ul|aleja|al|plac|osiedle|rynek|"
    r"utca|út|tér|körút|köz|sor|"
    r"strada|soseaua|șoseaua|bulevardul|calea|aleea|intrarea|splaiul|piața|drumul|"
    r"jalan|jl|gang|gg|lorong|"
    r"sokak|sokağı|cadde|caddesi|bulvarı|mahallesi|"
    r"ulitsa|prospekt|"
    r"ул|улица|пр|просп|пер|переулок|бул|ш|шоссе|пл|наб|алл|д|к|стр"
)
# Street words glued to the end of the street's name: "Hauptstraße", "Runebergintie", "Lystrupgade".
_STREET_SUFFIXES = (
    r"straße|strasse|str\.|gasse|weg|allee|platz|ring|damm|steig|pfad|gässli|"
    r"laan|straat|gracht|plein|dreef|steeg|singel|kade|hof|"
    r"katu|tie|kuja|polku|bulevardi|raitti|kaari|rinne|"
    r"gatan|gata|vägen|väg|gränd|torget|stigen|backen|"
    r"gade|vej|vænget|stræde|alle|torv|"
    r"veien|vegen|gaten|gata|stubben|svingen|haugen|åsen|"
    r"ova|ská|ého|"
    r"ulica|utca|"
    r"cesta|ulica|gatve|iela|tänav|"
    r"sokak|caddesi"
)
# Street words that follow the street's name, the number after them: "Váci utca 15", "Molekova ulica 3b".
_WORDS_BEFORE_NUMBER = (
    r"utca|út|tér|körút|köz|sor|ulica|cesta|trg|iela|gatve|prospektas|tänav|tee|sokak|sokağı|cadde|caddesi|"
    r"gade|vej|gata|gatan|vägen|laan|straat|weg|strasse|straße|allee|platz|ring|gasse"
)
_HOUSE = r"\d{1,5}(?:\s?[A-Za-z](?![\w])(?:\s\d{1,4}(?![\w]))?)?(?:\s?[/-]\s?\d{1,4}[A-Za-z]?)?"
_NAME_WORD = _CAP + r"[\w'’.-]*"
_TOWN_WORD = _CAP + r"(?:[^\W\d_]|['’.-](?=[^\W\d_]))*"
_UNIT = (
    r"(?:,?\s*(?i:apt|apartment|suite|ste|unit|flat|fl|floor|room|rm|bldg|building|piso|interior|int|"
    r"sala|depto|dpto|apto|andar|bloco|lok|m|app|appartamento|esc|puerta|porta|stg|étage|bus|bte|"
    r"no|nr|nº|n°|bl|sc|ap|et|edif|#)\.?\s*#?\s?[A-Za-z]?\d{1,5}[A-Za-z]?\b)"
)
_STREET_WORD_RE = r"(?i:" + _STREET_WORDS + r")\.?"

# "12 Baker Street", "5515 montée Maude", "725 rue Grenier", "41585 Horton Radial Suite 595".
_NUMBER_FIRST = re.compile(
    r"(?<![\w.,/-])(?:(?i:apt|apartment|suite|unit|flat)\.?\s*\d{1,5}[A-Za-z]?,?\s+)?"
    + _HOUSE
    + r",?\s+(?:[NSEW]\.?\s+)?"
    r"(?:(?:" + _NAME_WORD + r"\s+){1,3}" + _STREET_WORD_RE + r"(?![\w])"
    r"|" + _STREET_WORD_RE + r"(?:\s+(?:de|du|des|la|le|del|da|do|dos|das|di)\b){0,2}(?:\s+" + _CAP + r"[\w'’-]*){1,3})"
    r"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?" + _UNIT + "{0,4}"
)
# "Hauptstraße 5", "Via Loretta, 7", "ul. Jesienna 896", "Callejón Muñoz 884 Interior 491", "Paseo Sancho Aliaga 19".
_STREET_FIRST = re.compile(
    r"(?<![\w])(?:"
    + _STREET_WORD_RE
    + r"(?:\s+(?:de|du|des|la|le|del|da|do|dos|das|di|dei|della|von|van)\b)?(?:\s+(?:"
    + _NAME_WORD
    + r")){1,4}"
    r"|(?:" + _CAP + r"[\w'’.-]*\s+){0,3}" + _CAP + r"[\w'’-]*(?i:" + _STREET_SUFFIXES + r")"
    r"|(?:" + _CAP + r"[\w'’-]*\s+){1,3}(?i:" + _WORDS_BEFORE_NUMBER + r")\.?"
    r")\.?,?\s+(?:(?i:no|nr|nº|n°)\.?\s*)?" + _HOUSE + r"\.?(?![\d])" + _UNIT + "{0,4}"
)
# The street's name only, with no number ("Strada Oprea", "Intrarea Ene", "Alameda da Estiva, S/N").
_STREET_NAMED = re.compile(
    r"(?<![\w])(?i:strada|soseaua|intrarea|aleea|calea|alameda|travessa|ulica|aleja)"
    r"(?:\s+(?:de|da|do|del|di)\b)?(?:\s+" + _CAP + r"[\w'’-]*){1,3}(?:,\s*S/N)?"
)
_TOWN = (
    _TOWN_WORD
    + r"(?:[ \t–-]+(?:(?:de|da|do|del|di|la|le|los|las|am|an|im|nad|pod|sur|sous|en|upon|on)[ \t]+)?"
    + _TOWN_WORD
    + r"){0,3}(?:\s\([A-Z]{2,4}\))?"
)
_POSTCODE = (
    r"(?:[A-Z]{1,2}-)?\d{5}(?:-\d{3,4})?"  # DE, FR, IT, ES, US, FI, MX; BR 12345-678; H-1234 handled below
    r"|\d{3}\s\d{2}"  # CZ, SK, SE
    r"|\d{2}-\d{3}"  # PL
    r"|\d{4}-\d{3}"  # PT
    r"|\d{4}\s?[A-Z]{2}"  # NL
    r"|(?:[A-Z]{1,2}-)?\d{4}"  # AT, CH, BE, DK, NO, HU (H-1234)
    r"|\d{6}"  # IN, RU, RO
)
# "10115 Berlin", "H-7752 Pécs", "1745 CI Melissant", "63816, Francavilla D'Ete (FM)".
_POSTCODE_TOWN = re.compile(r"(?<![\w.,/-])(?:" + _POSTCODE + r"),?\s+" + _TOWN)
# "Dorohoi, 428601", "Melilla, 26554", "Kanpur-290404", "Vila Real, 5000-123".
_TOWN_POSTCODE = re.compile(r"(?<![\w])" + _TOWN + r"(?:,\s*|-)(?:\d{6}|\d{5}(?:-\d{3,4})?|\d{4}-\d{3})(?![\w.,-]\d)")
US_STATE = (
    r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ"
    r"|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|AS|GU|MP|PR|VI|AA|AE|AP)"
)
# "Springfield, IL 62704", "Bouchard, SK R1B 2R7", "Port Glendachester, ACT, 8377", "Serang, SU 42425".
_TOWN_REGION_CODE = re.compile(
    r"(?<![\w])" + _TOWN + r",\s*[A-Z]{2,4},?\s+(?:\d{4,5}(?:-\d{4})?|[A-Z]\d[A-Z]\s?\d[A-Z]\d)(?![\w])"
)
_CA_POSTCODE_TOWN = re.compile(r"(?<![\w])[A-Z]\d[A-Z]\s?\d[A-Z]\d(?:\s+" + _TOWN + r")?(?![\w])")
UK_POSTCODE = re.compile(r"(?<![\w])[A-Z]{1,2}\d[A-Z\d]?\s?\d[ABD-HJLNP-UW-Z]{2}(?![\w])(?:[ \t]+" + _TOWN + r")?")
# "Kavali 985274", "Hubli–Dharwad 124936": a town before a six-digit PIN code (India, Russia, Romania).
_TOWN_PIN = re.compile(r"(?<![\w])" + _TOWN + r"[ \t]+\d{5,6}(?![\w.,-]\d)")
# Brazil: "60127970 Aparecida / MG", "23070-322 Fernandes de Barros / PE".
_BR_CEP = re.compile(
    r"(?<![\w])\d{5}-?\d{3}[ \t]+" + _TOWN + r"(?:[ \t]+(?:de|da|do)[ \t]+" + _TOWN + r")?[ \t]*/[ \t]*[A-Z]{2}(?![\w])"
)
# Japan: prefecture/city/ward and block numbers ("岡山県横浜市栄区細野16丁目4番8号 前弥六南町クレスト466").
_JP = re.compile(
    r"(?:[\u3040-\u30ff\u4e00-\u9fff]{1,6}[都道府県])?[\u3040-\u30ff\u4e00-\u9fff]{1,12}[市区町村郡]"
    r"[\u3040-\u30ff\u4e00-\u9fff\d０-９-]*?\d+(?:丁目|番地?|号|-)[\u3040-\u30ff\u4e00-\u9fff\d０-９-]*"
    r"(?:[ \t　][\u3040-\u30ff\u4e00-\u9fffA-Za-z]+\d+)?"
)
IE_EIRCODE = re.compile(r"(?<![\w])[AC-FHKNPRTV-Y]\d{2}\s?[AC-FHKNPRTV-Y0-9]{4}(?![\w])")
PO_BOX = re.compile(r"(?i)(?<![\w])(?:P\.?\s?O\.?\s+Box|Postfach|Apartado|Caixa\s+Postal|Casilla|BP)\s+\d{1,6}(?![\w])")
# US military post: "PSC 8071, Box 0991", "Unit 1631 Box 4960", "USNS Comfort", "APO AP 43303".
MILITARY = re.compile(
    r"(?<![\w])(?:(?:PSC|CMR|Unit)\s+\d{1,5},?\s+Box\s+\d{1,5}|US[NS]{1,2}\s+" + _CAP + r"\w+"
    r"|[AFD]PO\s+A[AEP]\s+\d{5})(?![\w])"
)
_ADDRESS_CUE = re.compile(
    r"(?i)\b(?:i\s+live\s+(?:at|in|on)|i\s+(?:have\s+)?moved\s+to|(?:my|the|new|old|home|billing|"
    r"shipping|delivery|postal|mailing|street)\s+address(?:\s+is)?|address\s*(?:is|:)|"
    r"ship(?:ped)?\s+(?:it\s+)?to|deliver(?:ed)?\s+(?:it\s+)?to|"
    r"located\s+at|lives?\s+at)\s*:?[ \t]*\n?"
)
_LINE_END = re.compile(r"(?:\.\s|\.$|\n\s*\n|[!?]\s|,\s+(?:thanks|thank|please|and|but|so)\b)", re.IGNORECASE)

# Russian and other Cyrillic addresses: "г. Чикола, алл. Железнодорожная, д. 515", "447652 п. Бирск".
CYRILLIC = re.compile(
    r"(?<![\w])(?:\d{6},?\s+)?(?:(?:г|п|с|д|к|ул|пер|бул|пр|просп|алл|наб|ш|стр|пл|кв|обл|р-н)\.\s*"
    r"[\w-]+(?:\s[\w-]+){0,2}(?:\s\([\w.]+\))?,?\s*){1,6}(?:\d{6})?"
)
PATTERNS = (
    CYRILLIC,
    _NUMBER_FIRST,
    _STREET_FIRST,
    _STREET_NAMED,
    _POSTCODE_TOWN,
    _TOWN_POSTCODE,
    _TOWN_PIN,
    _BR_CEP,
    _JP,
    _TOWN_REGION_CODE,
    _CA_POSTCODE_TOWN,
    UK_POSTCODE,
    IE_EIRCODE,
    PO_BOX,
    MILITARY,
)
# Words after a number that are not a town: "2 x 500 ml" never matches (lower case), these are the rest.
_NOT_TOWNS = frozenset(
    """
    am pm cet cest utc gmt est pst edt pdt kr eur usd gbp chf sek nok dkk pln huf czk ml kg tb gb mb
    january february march april may june july august september october november december monday
    tuesday wednesday thursday friday saturday sunday jan feb mar apr jun jul aug sep sept oct nov dec
    black premium business family customer service prime office smart model pro plus the and or to
    for of in on at it i we you they he she my your our this that is was are be version build
    appreciate thanks thank please hello hi hey can could would will should did does do have has had
    still just now then also but so if when what why how who where here there yes no ok okay sorry
    help update error edition windows xbox playstation iphone android ios mac days hours minutes
    times people users items points coins credits euros dollars pounds station ticket order case
    invoice ref reference number id account serial code pin tracking transaction booking confirmation
    """.split()  # noqa: SIM905 - a word list reads better as text
)
_YEAR = re.compile(r"(?:19|20)\d\d$")


def _plausible(text: str, start: int, end: int, pattern: re.Pattern[str]) -> bool:
    value = text[start:end]
    if pattern in (_POSTCODE_TOWN, _TOWN_POSTCODE, _TOWN_PIN, _CA_POSTCODE_TOWN):
        words = re.findall(_L + r"+", value)
        if not words or all(w.lower() in _NOT_TOWNS for w in words):
            return False
        # A town has a lower-case letter: "5700 XT" and "HD 4870" are models.
        if pattern is not _CA_POSTCODE_TOWN and not any(c.islower() for w in words for c in w):
            return False
        if pattern is _POSTCODE_TOWN:
            first = re.match(r"[A-Z]{0,2}-?\d+", value)
            town = words[0].lower()
            if town in _NOT_TOWNS:
                return False
            # "2024 Black Friday", "since 2019 Apple": a year, unless a street comes just before.
            if (
                first
                and _YEAR.match(first.group(0))
                and not re.search(r"(?i)\b(?:" + _STREET_WORDS + r")\b", text[max(0, start - 60) : start])
            ):
                return False
    if pattern in (_TOWN_POSTCODE, _TOWN_PIN):
        words = re.findall(_L + r"+", value)
        if words and (words[0].lower() in _NOT_TOWNS or (len(words[0]) > 1 and words[0].isupper())):
            return False  # "INV-336008" is an invoice
    return True


def _cued(text: str) -> Iterator[tuple[int, int]]:
    """After an address cue: up to the end of the sentence, over at most three lines."""
    for cue in _ADDRESS_CUE.finditer(text):
        start = cue.end()
        rest = text[start : start + 200]
        end_match = _LINE_END.search(rest)
        length = end_match.start() if end_match else len(rest)
        value = rest[:length]
        lines = value.split("\n")
        if len(lines) > 3:
            value = "\n".join(lines[:3])
        value = value.rstrip(" ,;:\n")
        if "//" in value or len(value.split()) > 14:
            continue  # a link or a sentence, not an address
        first_word = value.split(maxsplit=1)[0] if value.split() else ""
        if not (first_word[:1].isdigit() or first_word[:1].isupper() or re.fullmatch(_STREET_WORD_RE, first_word)):
            continue  # "the address for order ORD-2024-1500" is prose about an address
        # Only an address-like stretch: it has a number and is not a sentence ("went to the wrong house").
        if (
            re.search(r"\d", value)
            and re.search(_L + r"{3}", value)
            and not re.match(r"(?i)(?:the|a|an|my|your|our|this|that|you|me)\b", value)
        ):
            yield start, start + len(value)


def find_addresses(text: str) -> Iterator[Span]:
    if not any(c.isdigit() for c in text):
        return  # every address shape has a house number, a postcode or a box number
    spans: list[tuple[int, int]] = []
    for pattern in PATTERNS:
        for match in pattern.finditer(text):
            start, end = match.start(), match.end()
            while end > start and text[end - 1] in " ,.\n":
                end -= 1
            if _plausible(text, start, end, pattern):
                spans.append((start, end))
    # The cue is the fallback for formats no pattern knows: where a pattern found the address, its
    # exact extent is better than "the rest of the sentence".
    # exact extent is better than "the rest of the sentence", but the address starts at the cue ("I live
    # at Kapucinske 5b/1\n98185 Krk": the street is unknown, the postcode and town are found).
    for cue_start, cue_end in list(_cued(text)):
        inside = [e for s, e in spans if s < cue_end and cue_start < e]
        spans.append((cue_start, max(inside)) if inside else (cue_start, cue_end))
    for start, end in _join(text, spans):
        yield Span(start, end, "ADDRESS", " ".join(text[start:end].lower().split()))


_GLUE = re.compile(r"[ \t]*[.,]?[ \t]*(?:\n[ \t]*)?(?:,[ \t]*)?")


def _join(text: str, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping parts, and parts separated only by a comma or a line break, are one address."""
    joined: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if joined and (start <= joined[-1][1] or _GLUE.fullmatch(text[joined[-1][1] : start])):
            joined[-1] = (joined[-1][0], max(end, joined[-1][1]))
            continue
        # A town line between a street and a postcode ("Belvedere" in a Brazilian address) is absorbed
        # when the next part follows within one short line.
        if joined:
            gap = text[joined[-1][1] : start]
            if re.fullmatch(r"[ \t]*,?[ \t]*\n[ \t]*" + _TOWN + r"[ \t]*,?[ \t]*\n[ \t]*", gap):
                joined[-1] = (joined[-1][0], end)
                continue
        joined.append((start, end))
    return joined
