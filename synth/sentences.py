"""English annotation sentences split into a subject (the phrase) and a base-form verb phrase (the action).

Samples ask "When does {phrase} {action}?", so a sentence is split into its subject and its verb phrase,
with the first verb (and verbs joined to it by "and"/"then") in the base form:
  "A man is seen speaking to the camera." -> ("a man", "speak to the camera")
  "The man in the hat reaches out and points." -> ("the man in the hat", "reach out and point")
The subject ends at the first verb: an auxiliary (is, has, can, ...), an -s or past form of a known verb,
or a bare known verb when the subject has no preposition yet ("person turn a light on"; "the woman in the
black dress turns" is not cut at "dress"). A word after a determiner, possessive, number or preposition is
a noun. An -ing/-ed word or "who"/"which"/"that" opens a modifier when a finite verb follows before any
"and"/"then" ("the man wearing a hat walks away"); otherwise it is the verb ("person sitting on a couch").
"is seen/shown doing" becomes "do"; "is seen/shown" alone becomes "appear"; a sentence without any verb is
the phrase and its action is "appear". Known verbs are the list below (actions common in these datasets);
a one-word subject followed by an unknown -s/-ing/-ed word is cut there too.
"""

from __future__ import annotations

import re

_VERBS = frozenset("""
add adjust answer appear apply approach argue arrange arrive ask assemble assist attach awaken bake balance bang
bathe beat begin bend bite blow board boil bounce bow braid break breathe bring brush build button buy call
carry catch change chase chat check cheer chew chop clap clean clear climb close comb come comfort continue cook
cough crack crawl cross crouch cry cut dance decorate demonstrate descend describe dig dip disappear dive do
drag draw dress drink drive drop dry dunk eat embrace empty end enter examine exercise exit explain fall feed
fight fill film find finish fix flip float fly fold follow fry gather gesture get give glance go grab grasp
greet grill grip groom guide hand hang help hide hit hold hop hug hum iron jog juggle jump kick kiss kneel knit
knock laugh launch lay lead lean learn leave lick lie lift listen load lock look lower lunge make march massage
measure mix mop mount move mow nod observe offer open organize pack paddle paint pan pass pat pause peel perform
pet photograph pick pitch place plant play point polish pose pour practice prepare present press pull punch push
put raise rake reach read receive relax release remove repair replace rest return reveal ride rinse rise roll
rotate rub run say scoop score scratch scream scrub search see serve sew shake shave shoot shout show shut sing
sip sit skate ski skip slap sleep slice slide smile smoke snap sneeze sniff snuggle speak spin splash spray
spread sprinkle squat stack stand stare start step stir stop straighten stretch strike stroke strum surf sweep
swim swing take talk tap taste teach tell throw tidy tie tighten toss touch turn twist type undress unlock
unpack untie use vacuum wait wake walk wash watch wave wear whisk whistle wipe work wrap wrestle write yawn yell
zip zoom
""".split())
_IRREGULAR = {
    "is": "be", "are": "be", "was": "be", "were": "be", "am": "be", "has": "have", "had": "have", "does": "do",
    "did": "do", "goes": "go", "went": "go", "lying": "lie", "tying": "tie", "took": "take", "sat": "sit",
    "stood": "stand", "ran": "run", "threw": "throw", "held": "hold", "ate": "eat", "drank": "drink", "gave": "give",
    "got": "get", "came": "come", "made": "make", "began": "begin", "fell": "fall", "spoke": "speak", "wore": "wear",
    "brought": "bring", "caught": "catch", "rode": "ride", "drove": "drive", "swam": "swim", "wrote": "write",
    "woke": "wake", "shook": "shake", "told": "tell", "found": "find", "hung": "hang", "led": "lead", "left": "leave",
    "says": "say", "said": "say",
}
_BE = frozenset({"is", "are", "was", "were", "am"})
_AUXILIARIES = _BE | {"has", "have", "had", "does", "do", "did", "can", "could", "will", "would", "may", "might",
                      "must", "should", "shall"}
_MODALS = frozenset({"can", "could", "will", "would", "may", "might", "must", "should", "shall"})
_DETERMINERS = frozenset("""a an the this these those his her their its my your our some any each every another
other several many few both all no one two three four five six seven eight nine ten""".split())
_PREPOSITIONS = frozenset("""in on at with of from by for into onto over under near behind beside between across
through around inside outside""".split())
_NOUN_LEFT = _DETERMINERS | _PREPOSITIONS  # the word after one of these is a noun, not a verb
_RELATIVE = frozenset({"who", "which", "that"})
_CLAUSE_BREAK = frozenset({"and", "then", "while", "before", "after", "but", "or"})
_DROPPED_ADVERBS = frozenset({"then", "now", "also", "finally", "first", "next", "afterwards", "later", "again"})
_MOVED_ADVERBS = frozenset({"slowly", "quickly", "carefully", "gently", "suddenly", "repeatedly", "continuously",
                            "quietly", "happily", "briefly", "immediately", "eventually"})
_SEEN = frozenset({"seen", "shown"})
_LOWER_FIRST = _DETERMINERS | frozenset("""he she they it we you someone somebody person people man men woman
women boy boys girl girls child children kid kids guy guys lady ladies""".split())
_PUNCT = ",.;:!?\"'()"


def _core(token: str) -> str:
    return token.strip(_PUNCT).lower()


def _stem_candidates(w: str):
    """Possible base forms of an inflected word, most likely first."""
    if w.endswith("ies"):
        yield w[:-3] + "y"
    if w.endswith("es"):
        yield w[:-2]
    if w.endswith("s") and not w.endswith("ss"):
        yield w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) > len(suffix) + 1:
            stem = w[: -len(suffix)]
            yield stem
            yield stem + "e"
            if len(stem) > 2 and stem[-1] == stem[-2]:
                yield stem[:-1]  # putting -> put
            if suffix == "ed" and stem.endswith("i"):
                yield stem[:-1] + "y"  # tidied -> tidy


def base_form(word: str) -> str | None:
    """The base form of a known verb in any form (``"puts"``, ``"putting"`` -> ``"put"``); None otherwise."""
    w = _core(word)
    if w in _IRREGULAR:
        return _IRREGULAR[w]
    if w in _VERBS:
        return w
    return next((c for c in _stem_candidates(w) if c in _VERBS), None)


def _guessed_base(word: str) -> str:
    """An unknown verb's base form by its ending alone (``"zorbs"`` -> ``"zorb"``)."""
    w = _core(word)
    if w.endswith("ies"):
        return w[:-3] + "y"
    if re.search(r"(ss|sh|ch|x|z)es$", w):
        return w[:-2]
    if w.endswith("s") and not w.endswith("ss"):
        return w[:-1]
    for suffix in ("ing", "ed"):
        if w.endswith(suffix) and len(w) > len(suffix) + 2:
            return w[: -len(suffix)]
    return w


def _verb_kind(word: str) -> str | None:
    """"aux", "finite" (-s or irregular past), "participle" (-ing, -ed), "base", or None (not a known verb)."""
    w = _core(word)
    if w in _AUXILIARIES:
        return "aux"
    base = base_form(w)
    if base is None:
        return None
    if w == base:
        return "base"
    return "participle" if w.endswith(("ing", "ed")) else "finite"


def _finite_after(words: list[str], i: int) -> int | None:
    """The first auxiliary or finite verb after ``i`` within the same clause (before "and", "then", ...)."""
    for k in range(i + 1, len(words)):
        w, prev = _core(words[k]), _core(words[k - 1])
        if w in _CLAUSE_BREAK:
            return None
        if prev not in _NOUN_LEFT and _verb_kind(w) in ("aux", "finite"):
            return k
    return None


def _verb_index(words: list[str], strict: bool) -> int | None:
    """Where the verb phrase starts (see the rules above); ``strict`` refuses a bare verb after a preposition."""
    after_preposition = False
    for i in range(1, len(words)):
        w, prev = _core(words[i]), _core(words[i - 1])
        after_preposition |= prev in _PREPOSITIONS
        if w in _RELATIVE and prev not in _NOUN_LEFT:
            first = next((k for k in range(i + 1, len(words)) if _verb_kind(words[k])), None)
            main = _finite_after(words, first) if first is not None else None
            return main if main is not None else i
        kind = _verb_kind(w)
        if kind is None or (prev in _NOUN_LEFT and kind != "aux"):
            continue
        if kind in ("aux", "finite") or (kind == "base" and not (strict and after_preposition)):
            return i
        if kind == "participle":
            main = _finite_after(words, i)
            return main if main is not None else i
    return None


def _unknown_verb_index(words: list[str]) -> int | None:
    """After a one-word subject (or determiner + word), an inflected word is taken as an unknown verb."""
    i = 2 if _core(words[0]) in _DETERMINERS else 1
    if i < len(words) and re.search(r"(s|ing|ed)$", _core(words[i])) and _core(words[i]) not in _NOUN_LEFT:
        return i
    return None


def _with_core(token: str, core: str) -> str:
    """``token`` with its word replaced, its punctuation kept (``"takes,"`` -> ``"take,"``)."""
    m = re.match(rf"^([{re.escape(_PUNCT)}]*)(.*?)([{re.escape(_PUNCT)}]*)$", token)
    return m.group(1) + core + m.group(3)


def _base_action(words: list[str], known: bool) -> list[str]:
    """The verb phrase with its first verb, and verbs joined to it by "and"/"then", in the base form."""
    out = list(words)
    if not out:
        return ["appear"]
    head = _core(out[0])
    if head in _BE:
        rest = out[1:]
        while rest and _core(rest[0]) in _DROPPED_ADVERBS:
            rest = rest[1:]
        seen = rest[1:] if rest and _core(rest[0]) in _SEEN else None  # what follows "is seen/shown"
        verb = seen if seen is not None else rest
        if verb and _core(verb[0]).endswith("ing") and base_form(verb[0]):
            out = [_with_core(verb[0], base_form(verb[0]))] + verb[1:]
        elif seen is not None and (not seen or _core(seen[0]) in _PREPOSITIONS):
            out = ["appear"] + seen  # "a cake is shown (on a plate)" -> "a cake appear (on a plate)"
        else:
            out = ["be"] + rest
    elif head in _MODALS and len(out) > 1:
        out = out[1:]
    else:
        out[0] = _with_core(out[0], (base_form(out[0]) if known else None) or _guessed_base(out[0]))
    for k in range(1, len(out)):
        if _core(out[k - 1]) in ("and", "then") and _verb_kind(out[k]) in ("finite", "participle"):
            out[k] = _with_core(out[k], base_form(out[k]))
    return out


def _normalize(sentence: str) -> list[str]:
    words = sentence.strip().rstrip(" .!;").split()
    while words and _core(words[0]) in _DROPPED_ADVERBS:  # "Then the man ..."
        words = words[1:]
    if words and _core(words[0]) in _LOWER_FIRST:
        words[0] = words[0].lower()
    return words


def split_sentence(sentence: str) -> tuple[str, str]:
    """``"The man in the hat reaches out."`` -> ``("the man in the hat", "reach out")`` (rules above)."""
    words = _normalize(sentence)
    if len(words) < 2:
        return " ".join(words), "appear"
    cut = _verb_index(words, strict=True) or _verb_index(words, strict=False)
    known = cut is not None
    cut = cut or _unknown_verb_index(words)
    if cut is None:
        return " ".join(words).rstrip(","), "appear"
    subject, lead = words[:cut], []
    while len(subject) > 1 and _core(subject[-1]) in _DROPPED_ADVERBS | _MOVED_ADVERBS:
        if _core(subject[-1]) in _MOVED_ADVERBS:
            lead.insert(0, subject[-1])
        subject = subject[:-1]
    if _core(words[cut]) in _RELATIVE:  # "the man who stands up and walks away": no main verb
        cut += 1
    action = lead + _base_action(words[cut:], known)
    return " ".join(subject).rstrip(","), " ".join(action).rstrip(",")


def split_charades(sentence: str) -> tuple[str, str]:
    """Charades sentences are "person <verb phrase>": the subject "person" / "a person" reads "the person"."""
    phrase, action = split_sentence(sentence)
    return ("the person" if phrase.lower() in ("person", "a person", "the person") else phrase), action
