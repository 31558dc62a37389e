"""Strecke: read a task and say which road it is, how hard, how urgent and in how many stages.

Plain rules, no model, so every result can be explained:

1. Signals. Every road lists English and German signal words in the admin. Text and signals are
   compared lower-case with umlauts spelled out (``ü`` = ``ue``, ``ß`` = ``ss``). An English
   signal matches as a word with its regular endings (``fix`` → fixes, fixed, fixing;
   ``migrate`` → migration). A German signal is a stem: it matches any word it begins
   (``formatier`` → Formatiere, formatierst, Formatierung) and a participle with ``ge-``
   (``prüf`` → geprüft). A one-word signal of five letters or more also matches the end of a
   compound (``migration`` → Datenbankmigration, ``error`` → TypeError). A phrase matches as
   a phrase; where several signals start at the same place, the longest wins.
2. Weight. A signal counts once, with its best weight: 2 as the task's first word (the imperative,
   after a label such as "Urgent:" and polite words), 1.5 elsewhere in the first sentence, 1
   further on; a task that opens with a list has no first sentence. A phrase counts once per word. Signals of the
   fallback road are generic verbs ("add", "write") and count half: the object names the work.
   A signal listed for two roads (such as "fix") counts for both, and the other words decide.
3. Structure. Four rules add evidence that single words miss:
   bulk    "all 40 files", "every function", or a list of like items → the bulk road;
   parts   several named parts (frontend, backend, API, docs …) → the multi-part road;
   project five or more stages of different kinds of work → the long-distance road;
   stages  the number of list items, or of sequence markers ("then", "danach") plus one.
4. The road with the most evidence wins; a tie goes to the road named first, then to the harder
   one. Confidence is half the winner's lead over the runner-up, half the amount of evidence.
   Without any evidence the fallback road wins with confidence 0.
"""

import functools
import re
import unicodedata
from collections.abc import Iterable, Sequence

from garage.engine.types import RoadSpec, Strecke

TEMPOS = ("urgent", "normal", "thorough")

VERB_WEIGHT = 2.0
FIRST_SENTENCE_WEIGHT = 1.5
BODY_WEIGHT = 1.0
FALLBACK_FACTOR = 0.5
TAIL_MIN_LETTERS = 5

BULK_ROAD, TEAM_ROAD, PROJECT_ROAD = "rallye", "teamfahrt", "langstrecke"
BULK_BONUS = 2.5
LIST_BULK_PER_ITEM = 1.0
LIST_BULK_MIN_ITEMS = 3
PART_BONUS = 1.25
PROJECT_BONUS = 3.0
PROJECT_MIN_STAGES = 5
CONFIDENCE_HALF_EVIDENCE = 2.0

DIFFICULTY_STEP = 0.07
DIFFICULTY_WORDS_CAP = 0.21
DIFFICULTY_PER_STAGE = 0.03
DIFFICULTY_STAGES_CAP = 0.15
DIFFICULTY_LENGTH_MAX = 0.1
DIFFICULTY_LENGTH_WORDS = 300

_FOLD = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "’": "'", "‘": "'"})
_UMLAUTS = "äöüßÄÖÜ"


def fold(text: str) -> str:
    """Lower case with umlauts spelled out, so "Prüfe", "PRUEFE" and "prüfe" read the same."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return text.lower().translate(_FOLD)


def _lookup_key(text: str) -> str:
    """The form under which a signal or a matched phrase is looked up."""
    return " ".join(text.replace("-", " ").replace("'", "").split())


def _english_forms(key: str) -> set[str]:
    """A signal with the regular English endings of its last word."""
    head, _, last = key.rpartition(" ")
    forms = {last, last + "s", last + "es", last + "ed", last + "ing", last + "er", last + "ers"}
    if last.endswith("e"):
        stem = last[:-1]
        forms |= {last + "d", last + "r", last + "rs", stem + "ing", stem + "ion", stem + "ions"}
    elif last.endswith("y") and len(last) > 2 and last[-2] not in "aeiou":
        forms |= {last[:-1] + "ies", last[:-1] + "ied"}
    elif len(last) >= 3 and last[-1] not in "aeiouwxy" and last[-2] in "aeiou":
        doubled = last + last[-1]  # debug → debugging, format → formatted
        forms |= {doubled + "ing", doubled + "ed", doubled + "er", doubled + "y"}
    return {f"{head} {form}" if head else form for form in forms}


def _trie_pattern(keys: Iterable[str]) -> str:
    """One regex for many words that reads each letter once and prefers the longest word.

    A plain alternation of a few hundred words tries every word at every position; the trie
    keeps analyse in microseconds. A space stands for any run of spaces or hyphens, and an
    apostrophe is optional ("doesn't" = "doesnt").
    """
    root: dict = {}
    for key in keys:
        node = root
        for char in key:
            node = node.setdefault(char, {})
        node[""] = {}
    return _render(root)


def _render(node: dict) -> str:
    branches = [_atom(char) + _render(child) for char, child in sorted(node.items()) if char]
    if not branches:
        return ""
    if len(branches) == 1:
        return f"(?:{branches[0]})?" if "" in node else branches[0]
    body = "(?:" + "|".join(branches) + ")"
    return body + "?" if "" in node else body


def _atom(char: str) -> str:
    if char == " ":
        return r"[\s\-]+"
    if char == "'":
        return "'?"
    return re.escape(char)


def _words_pattern(words: Iterable[str]) -> re.Pattern:
    return re.compile(r"\b(?:" + _trie_pattern(words) + r")\b")


# What comes before the imperative: a label ("Urgent:", "Aufgabe:") and polite words
# ("Please fix …", "Kannst du bitte …").
_FILLERS = re.compile(
    r"[\W_]*(?:\w+(?: \w+)?:[\W_]*)?(?:(?:please|pls|kindly|hey|hi|hello|can you|could you"
    r"|would you|bitte|hallo|kannst du|koenntest du|mal)\b[\W_]*)*"
)
_SENTENCE_END = re.compile(r"[.!?;:](?:\s|$)|\n")
# "- x", "* x", "• x", "1. x", "1) x", "a) x"; the item runs from its first to its last visible
# character (greedy, so a line full of spaces cannot make the match quadratic).
_LIST_ITEM = re.compile(
    r"^[ \t]*(?:[-*•+]|\d{1,3}[.)]|\(?[a-z][.)])[ \t]+(\S(?:.*\S)?)", re.MULTILINE | re.IGNORECASE
)
_QUANTIFIER = (
    r"all|every|each|these|those|\d{2,}|alle[nrs]?|jede[nmrs]?|saemtliche[nmrs]?|diese[nrs]?"
    r"|folgende[nmrs]?"
)
_UNIT = (
    r"files?|modules?|functions?|class(?:es)?|methods?|endpoints?|components?|templates?|pages?"
    r"|strings?|icons?|images?|documents?|repos|repositories|scripts?|tables?|notebooks?"
    r"|dateien|datei|modul(?:e|en)?|funktion(?:en)?|klassen?|methoden?|endpunkte?n?"
    r"|komponenten?|seiten?|texte?|bilder|dokumente?n?|skripte?n?|tabellen?"
)
# A quantifier, at most two words, then a countable thing, also as the end of a compound:
# "all 40 files", "jede Funktion", "alle Übersetzungsdateien".
_BULK = re.compile(
    r"\b(?:" + _QUANTIFIER + r")(?:\s+[\w'-]+){0,2}?\s+[^\W\d_]{0,30}(?:" + _UNIT + r")\b"
)
_LEAD_IN_BULK = re.compile(r"\b(?:" + _QUANTIFIER + r"|the following|die folgenden)\b")


def _word_list(spec: str) -> list[str]:
    """Words separated by spaces; an underscore joins the words of a phrase."""
    return [word.replace("_", " ") for word in spec.split()]


# Feature words, all found in one pass. A trailing "*" marks a stem that takes any ending.
_FEATURE_WORDS = {
    "urgent": _word_list(
        "urgent urgently asap quick quickly hotfix immediately right_now as_soon_as_possible"
        " schnell schnellstens schnellstmoeglich* dringend* sofort* eilig* eilt"
    ),
    "thorough": _word_list(
        "thorough thoroughly careful carefully in_depth detailed in_detail gruendlich*"
        " sorgfaeltig* ausfuehrlich*"
    ),
    "hard": _word_list(
        "concurren* distributed security secure vulnerab* race_condition race_conditions"
        " deadlock deadlocks performance latency scalab* thread* encrypt* consistency"
        " memory_leak memory_leaks zero_downtime nebenlaeufig* verteilt* sicherheit* leistung"
        " skalier* verschluessel* speicherleck* ausfallsicher*"
    ),
    "easy": _word_list(
        "simple simply small just tiny trivial minor easy one_line einfach* kurz* klein* nur"
        " kleinigkeit"
    ),
    "sequence": _word_list(
        "then after_that afterwards finally danach anschliessend dann zuletzt schliesslich"
        " im_anschluss"
    ),
    # Parts of a system, for work across several of them: one feature per part.
    "part:frontend": _word_list("frontend frontends"),
    "part:backend": _word_list("backend backends"),
    "part:api": _word_list("api apis"),
    "part:database": _word_list("database databases datenbank*"),
    "part:docs": _word_list("docs documentation doku*"),
    "part:ui": _word_list("ui oberflaeche*"),
    "part:admin": _word_list("admin"),
    "part:cli": _word_list("cli"),
    "part:mobile": _word_list("mobile"),
}


def _feature_table() -> tuple[re.Pattern, dict[str, str]]:
    words, stems = {}, {}
    for feature, entries in _FEATURE_WORDS.items():
        for entry in entries:
            if entry.endswith("*"):
                stems[entry[:-1]] = feature
            else:
                words[entry] = feature
    pattern = rf"\b(?:(?P<word>{_trie_pattern(words)})\b|(?P<stem>{_trie_pattern(stems)})\w*)"
    return re.compile(pattern), {**stems, **words}


_FEATURES, _FEATURE_OF = _feature_table()
_GERMAN_WORDS = _words_pattern(
    _word_list(
        "der die das den dem des ein eine einen einem einer und oder aber nicht ist sind wird"
        " werden wurde soll sollte sollen kann muss mit fuer von zu zum zur auf im ins vom beim"
        " aus bei nach ueber unter wie wenn dass sich auch noch nur bitte ich du wir es uns"
        " unser unsere mir dir alle jede jeden diese dieser dieses sowie damit ob kein keine"
        " mehr schon hinzu"
    )
)
_ENGLISH_WORDS = _words_pattern(
    _word_list(
        "the a and or but not is are were be been would should can could must with for from to"
        " of on at by into this that these those it its as if when then please you we our my"
        " your all each every any do does there their what why how which after before some new"
    )
)


def roads_from_config(data: dict) -> list[RoadSpec]:
    """The roads of a ``config/roads.json`` document, for tests and benchmarks without a database."""
    return [
        RoadSpec(
            slug=entry["slug"],
            label=entry["label"],
            difficulty=entry["difficulty"],
            default_gear=entry["default_gear"],
            throttle=entry["throttle"],
            pattern=entry["pattern"],
            signals_en=tuple(entry.get("signals", {}).get("en", ())),
            signals_de=tuple(entry.get("signals", {}).get("de", ())),
            is_fallback=entry.get("fallback", False),
            order=entry.get("order", 0),
        )
        for entry in data["roads"]
    ]


# (road index, signal as the admin wrote it, weight)
_Entry = tuple[int, str, float]


def _add_entry(table: dict[str, list[_Entry]], form: str, entry: _Entry) -> None:
    """One entry per road and form; a signal written as the form beats one inflected into it."""
    entries = table.setdefault(form, [])
    for n, existing in enumerate(entries):
        if existing[0] == entry[0]:
            if _lookup_key(fold(entry[1])) == form != _lookup_key(fold(existing[1])):
                entries[n] = entry
            return
    entries.append(entry)


class Streckenanalyse:
    """Reads tasks for one road table. Build it once per table; ``analyse`` takes microseconds."""

    def __init__(self, roads: Sequence[RoadSpec]) -> None:
        if not roads:
            raise ValueError("Streckenanalyse needs at least one road")
        self.roads = tuple(sorted(roads, key=lambda road: (road.order, road.slug)))
        self._fallback = next((r for r in self.roads if r.is_fallback), self.roads[0])
        self._index = {road.slug: i for i, road in enumerate(self.roads)}
        english: dict[str, list[_Entry]] = {}
        german: dict[str, list[_Entry]] = {}
        tails: dict[str, list[_Entry]] = {}
        for i, road in enumerate(self.roads):
            factor = FALLBACK_FACTOR if road is self._fallback else 1.0
            for signals, table in ((road.signals_en, english), (road.signals_de, german)):
                for signal in signals:
                    key = _lookup_key(fold(signal))
                    if not key:
                        continue
                    entry = (i, signal.strip(), factor * len(key.split()))
                    forms = _english_forms(key) if table is english else {key}
                    is_tail = len(key) >= TAIL_MIN_LETTERS and " " not in key
                    for form in forms:
                        _add_entry(table, form, entry)
                        if is_tail:
                            _add_entry(tails, form, entry)
        self._tables = {"en": english, "de": german, "tail": tails}
        # One regex for all roads: an English word form, a German stem with any ending, or the
        # end of a compound whose first part has at least three letters.
        alternatives = []
        if english:
            alternatives.append(r"\b(?P<en>" + _trie_pattern(english) + r")\b")
        if german:
            alternatives.append(r"\b(?:ge)?(?P<de>" + _trie_pattern(german) + r")[^\W\d_]*\b")
        if tails:
            alternatives.append(
                r"(?<=[^\W\d_]{3})(?P<tail>" + _trie_pattern(tails) + r")[^\W\d_]{0,4}\b"
            )
        self._signals = re.compile("|".join(alternatives)) if alternatives else None

    def analyse(self, task: str, *, tempo: str | None = None) -> Strecke:
        if tempo is not None and tempo not in TEMPOS:
            raise ValueError(f"tempo must be one of {', '.join(TEMPOS)}, not {tempo!r}")
        text = fold(task)
        features = _Features(text)
        listed = list(_LIST_ITEM.finditer(task))
        items = tuple(match.group(1) for match in listed)
        stages = max(len(items), features.sequence + 1)

        lead_in = fold(task[: listed[0].start()]) if listed else text
        scores, first_seen, signals = self._score(text, lead_in_end=len(lead_in))
        self._add_structure(scores, first_seen, text, lead_in, items, features, stages)

        ranked = sorted(
            range(len(self.roads)),
            key=lambda i: (-scores[i], first_seen[i], -self.roads[i].difficulty),
        )
        best = scores[ranked[0]]
        runner_up = scores[ranked[1]] if len(ranked) > 1 else 0.0
        if best > 0:
            road, confidence = self.roads[ranked[0]], _confidence(best, runner_up)
        else:
            road, confidence = self._fallback, 0.0

        return Strecke(
            road=road.slug,
            confidence=confidence,
            difficulty=features.difficulty(road.difficulty, stages),
            tempo=tempo or features.tempo,
            stages=stages,
            items=items,
            signals=tuple(signals),
            language=_language(task, text),
            prompt_tokens=(len(task) + 3) // 4,
        )

    def _score(
        self, text: str, *, lead_in_end: int = 0
    ) -> tuple[list[float], list[int], list[str]]:
        """Evidence per road from its signals, where each road is first named, and the signals.

        Signals in the first sentence before ``lead_in_end`` weigh more; a task that starts with
        a list, or a list item scored on its own (``lead_in_end=0``), has no first sentence.
        """
        scores = [0.0] * len(self.roads)
        first_seen = [len(text)] * len(self.roads)
        if self._signals is None:
            return scores, first_seen, []
        verb_at = _FILLERS.match(text).end()
        end = _SENTENCE_END.search(text, verb_at, lead_in_end)
        first_sentence_end = end.start() if end else lead_in_end
        if verb_at >= first_sentence_end:
            verb_at = -1
        best: dict[tuple[int, str], float] = {}
        for match in self._signals.finditer(text):
            kind = match.lastgroup
            start = match.start()
            if start == verb_at:
                position = VERB_WEIGHT
            elif start < first_sentence_end:
                position = FIRST_SENTENCE_WEIGHT
            else:
                position = BODY_WEIGHT
            for road, signal, weight in self._tables[kind].get(_lookup_key(match.group(kind)), ()):
                key = (road, signal)
                best[key] = max(best.get(key, 0.0), weight * position)
                first_seen[road] = min(first_seen[road], start)
        for (road, _), weight in best.items():
            scores[road] += weight
        return scores, first_seen, list(dict.fromkeys(signal for _, signal in best))

    def _add_structure(
        self,
        scores: list[float],
        first_seen: list[int],
        text: str,
        lead_in: str,
        items: tuple[str, ...],
        features: "_Features",
        stages: int,
    ) -> None:
        def add(slug: str, bonus: float, position: int) -> None:
            i = self._index.get(slug)
            if i is not None:
                scores[i] += bonus
                first_seen[i] = min(first_seen[i], position)

        bulk = _BULK.search(text)
        if bulk:
            add(BULK_ROAD, BULK_BONUS, bulk.start())
        if len(features.parts) >= 2:
            add(TEAM_ROAD, PART_BONUS * (len(features.parts) - 1), len(text))

        kinds = {self._kind(item) for item in items}
        like_items = len(kinds) == 1 and None not in kinds
        if (
            len(items) >= LIST_BULK_MIN_ITEMS
            and not features.sequence
            and (like_items or _LEAD_IN_BULK.search(lead_in))
        ):
            add(BULK_ROAD, LIST_BULK_PER_ITEM * len(items), len(lead_in))
            return
        if stages >= PROJECT_MIN_STAGES and len(kinds - {None}) >= 2:
            add(PROJECT_ROAD, PROJECT_BONUS, len(text))

    def _kind(self, item: str) -> int | None:
        """The road a single list item names, if any."""
        scores, _, _ = self._score(fold(item))
        best = max(scores)
        return scores.index(best) if best > 0 else None


def analyser_for(roads: Iterable[RoadSpec]) -> Streckenanalyse:
    """The analyser for a road table, built once per distinct table.

    Building takes milliseconds, analysing microseconds. RoadSpecs are frozen values, so a road
    edited in the admin makes a different table and gets a fresh analyser.
    """
    return _analyser(tuple(sorted(roads, key=lambda road: (road.order, road.slug))))


@functools.lru_cache(maxsize=8)
def _analyser(roads: tuple[RoadSpec, ...]) -> Streckenanalyse:
    return Streckenanalyse(roads)


def _confidence(best: float, runner_up: float) -> float:
    """Half how far the winner is ahead of the runner-up, half how much evidence it has."""
    margin = (best - runner_up) / best
    strength = best / (best + CONFIDENCE_HALF_EVIDENCE)
    return 0.5 * margin + 0.5 * strength


class _Features:
    """Tempo, difficulty words, sequence markers and named parts, found in one pass."""

    __slots__ = ("easy", "hard", "parts", "sequence", "tempo", "words")

    def __init__(self, text: str) -> None:
        self.tempo, self.sequence, self.words = "normal", 0, len(text.split())
        self.hard: set[str] = set()
        self.easy: set[str] = set()
        self.parts: set[str] = set()
        for match in _FEATURES.finditer(text):
            word = _lookup_key(match.group(match.lastgroup))
            feature = _FEATURE_OF.get(word, "")
            if feature == "urgent":
                self.tempo = "urgent"
            elif feature == "thorough" and self.tempo == "normal":
                self.tempo = "thorough"
            elif feature == "sequence":
                self.sequence += 1
            elif feature == "hard":
                self.hard.add(word)
            elif feature == "easy":
                self.easy.add(word)
            elif feature.startswith("part:"):
                self.parts.add(feature)

    def difficulty(self, base: float, stages: int) -> float:
        """The road's difficulty, moved by hard and easy words, stages and length; 0..1."""
        difficulty = (
            base
            + min(len(self.hard) * DIFFICULTY_STEP, DIFFICULTY_WORDS_CAP)
            - min(len(self.easy) * DIFFICULTY_STEP, DIFFICULTY_WORDS_CAP)
            + min((stages - 1) * DIFFICULTY_PER_STAGE, DIFFICULTY_STAGES_CAP)
            + DIFFICULTY_LENGTH_MAX * min(self.words / DIFFICULTY_LENGTH_WORDS, 1.0)
        )
        return min(max(difficulty, 0.0), 1.0)


def _language(task: str, text: str) -> str:
    """German when German function words and umlauts outnumber English function words."""
    german = len(_GERMAN_WORDS.findall(text))
    if not task.isascii():
        german += sum(task.count(char) for char in _UMLAUTS)
    return "de" if german > len(_ENGLISH_WORDS.findall(text)) else "en"
