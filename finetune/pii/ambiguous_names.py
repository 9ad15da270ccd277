"""Words that look like names but often are not.

``AMBIGUOUS_NAMES``: lower-cased first names of the gazetteer that are also everyday words ("will",
"grant", "hope"). Such a word counts as a name only next to a cue ("Hi Will", "Mr. Grant", "- Hope") or
before a surname. Generated once from the gazetteer (Faker's person providers, see names.py) intersected
with the lower-case entries of Debian's `wamerican` word list, minus words far more often names in
support chats (John, Mike, Peter...); regenerated when the gazetteer grew to 38 locales.

``NEVER_NAMES``: months, days, support brands and products, and forms of address: not names even after a
cue ("Thanks Apple", "Hi team", "in May").
"""

AMBIGUOUS_NAMES: frozenset[str] = frozenset(
    """
    adelaide aurora berlin boston brooklyn carolina china cleveland dallas denver georgia holland
    houston india israel kenya lima london orlando paris phoenix sydney tokyo vienna abbey albino ale
    amber among angel ante archer aria aura autumn azalea baptist basil beau bent bill bitten brandy cal
    canal carmine chad cooper coral cord corona crystal curt daisy dale dawn dean destiny diamond dick
    divan don drew earl ebony edit else eta eve faith fanny feline fem floor flora forum frank gala gene
    glen grace grant grit gun gunner guy hardy harm harmony harsh henna holly hope hunter ion iris ivy
    jack jade jail jay jet job joy junior karma kick lance laze lea lee lily line lo lone lore lot love
    lucky mar mare margarita marina marine mark mart mason mats max meg melody meta misty my nacho nick
    nova odd olive owe pastor paw pearl peer penny per pier pierce piper poppy puck queen raven ray roan
    roar robin roman rose rune rut saga said salami sandy senna server sever sierra sine sol sole sue
    summer tan tanner tiara ties till tine tone tor tore toy trinity urban us valentine veer viola
    violet wadi wage warren willow wolf yoga
    aline an ares atlas bald beat berg beta bogey brim can clement constant dodo dolly dries eddy eider
    emerald emir ester ever fang felicity florin gang garret greet gull gust hazel heather hind imam
    jasmine jasper joke lady lander lean lei lien lies lode lope mars marten maxim maxima mentor mile min
    mist ninja paschal patty ping pol rein romaine rosemary rosette sari savannah sera serge silvan stein
    storm taro tea tilde valves van villa ward wilder wolfram washington austin florence
    """.split()  # noqa: SIM905 - a word list reads better as text
)

NEVER_NAMES: frozenset[str] = frozenset(
    """
    admin adobe again agent alexa all amazon android apple april august buddy chase chrome december
    delta dropbox ebay echo edge everyone excel february fire firefox folks friday friend galaxy go
    godaddy google guys help hulu ios ipad iphone january java july june kindle mac macbook madam march
    mate may microsoft mojang monday nest netflix november october office opera outlook paypal pixel
    playstation prime python ring rockstar roku ruby rust safari saturday september sir siri skype sony
    spectrum spotify sunday support swift team teams tesla there thursday tuesday uber wednesday windows
    word xbox yahoo youtube zoom
    catalina mojave sonoma ventura monterey
    """.split()  # noqa: SIM905 - a word list reads better as text
)
