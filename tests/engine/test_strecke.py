"""The Strecke reads tasks the way a team member means them. Plain Python: no database needed."""

import json
import random
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from garage.engine.strecke import TEMPOS, Streckenanalyse, analyser_for, roads_from_config
from garage.engine.types import RoadSpec

ROOT = Path(__file__).resolve().parents[2]
ROADS = roads_from_config(json.loads((ROOT / "config" / "roads.json").read_text(encoding="utf-8")))
SLUGS = {road.slug for road in ROADS}
FALLBACK = next(road.slug for road in ROADS if road.is_fallback)
LABELLED = json.loads(Path(__file__).with_name("labelled_tasks.json").read_text(encoding="utf-8"))
ANALYSER = Streckenanalyse(ROADS)


def analyse(task: str, **kwargs):
    return ANALYSER.analyse(task, **kwargs)


def with_signals(slug: str, *, en=None, de=None, roads=ROADS) -> list[RoadSpec]:
    """The road table with one road's signals edited, as an admin would."""
    return [
        replace(
            road,
            signals_en=road.signals_en if en is None else tuple(en),
            signals_de=road.signals_de if de is None else tuple(de),
        )
        if road.slug == slug
        else road
        for road in roads
    ]


# --- the labelled set ------------------------------------------------------------------------


def test_labelled_set_is_varied():
    per_road = Counter(case["road"] for case in LABELLED)
    languages = Counter(case["lang"] for case in LABELLED)
    tasks = [case["task"] for case in LABELLED]
    assert len(LABELLED) >= 120
    assert languages["de"] >= 40
    assert languages["en"] >= 40
    assert set(per_road) == SLUGS
    assert min(per_road.values()) >= 8, per_road
    assert len(set(tasks)) == len(tasks), "a task is labelled twice"
    assert any("\n- " in task or "\n* " in task for task in tasks), "no bulleted list"
    assert any("\n2. " in task or "\n2) " in task for task in tasks), "no numbered list"
    assert min(len(task) for task in tasks) < 25
    assert max(len(task) for task in tasks) > 250


def accuracy_report() -> tuple[dict[str, float], str]:
    hits, totals = Counter(), Counter()
    confusion: dict[str, Counter] = defaultdict(Counter)
    wrong = []
    for case in LABELLED:
        result = analyse(case["task"])
        ok = result.road == case["road"]
        for group in ("all", case["lang"]):
            totals[group] += 1
            hits[group] += ok
        confusion[case["road"]][result.road] += 1
        if not ok:
            wrong.append(
                f"  [{case['lang']}] {case['road']} → {result.road} "
                f"signals={list(result.signals)}: {case['task'][:90]!r}"
            )
    accuracy = {group: hits[group] / totals[group] for group in totals}
    lines = [f"accuracy: {', '.join(f'{g} {a:.1%}' for g, a in sorted(accuracy.items()))}"]
    lines.append("confusion (labelled → analysed):")
    for road, got in sorted(confusion.items()):
        lines.append(f"  {road}: {dict(got)}")
    lines.append(f"misclassified ({len(wrong)}):")
    lines.extend(wrong)
    return accuracy, "\n".join(lines)


def test_accuracy_on_the_labelled_tasks():
    accuracy, report = accuracy_report()
    assert accuracy["all"] >= 0.95, report
    assert accuracy["en"] >= 0.90, report
    assert accuracy["de"] >= 0.90, report


@pytest.mark.parametrize(
    ("task", "road"),
    [
        ("Fix the authentication bug in the login module", "bundesstrasse"),
        ("Fix typo in README", "feldweg"),
        ("Write unit tests for the parser", "testfahrt"),
        ("Review this pull request for security issues", "pruefstrecke"),
        ("Design the architecture for migrating our monolith to microservices", "autobahn"),
        ("Format all 40 files in src/ with black", "rallye"),
        ("Add a dark mode toggle to the settings page", "landstrasse"),
    ],
)
def test_the_examples_from_the_brief(task, road):
    assert analyse(task).road == road


# --- matching --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "road", "signal"),
    [
        ("Formatiere die Datei utils.py", "feldweg", "formatier"),
        ("Formatierst du bitte die Datei?", "feldweg", "formatier"),
        ("Die Datei ist nicht formatiert", "feldweg", "formatier"),
        ("Refactore das Zahlungsmodul", "landstrasse", "refactor"),
        ("Behebe den Absturz beim Login", "bundesstrasse", "behebe"),
        ("Bitte beheben: der Export bricht ab", "bundesstrasse", "behebe"),
        ("Der Bug ist immer noch nicht behoben", "bundesstrasse", "behoben"),
        ("Fehler behoben? Nein, der Export ist noch kaputt.", "bundesstrasse", "fehler"),
        ("Die Änderungen wurden noch nicht geprüft", "pruefstrecke", "prüf"),
        ("Plane die Datenbankmigration", "autobahn", "migration"),
        ("Schreibe Integrationstests für den Checkout", "testfahrt", "integrationstest"),
        ("Fixing the crash on startup", "bundesstrasse", "crash"),
        ("Debugging the flaky login", "bundesstrasse", "debug"),
        ("Migrating the billing service to the new cluster", "autobahn", "migrate"),
        ("The importer raises a KeyError on empty rows", "bundesstrasse", "error"),
    ],
)
def test_inflected_and_compound_forms_match_their_signal(task, road, signal):
    result = analyse(task)
    assert result.road == road
    assert signal in result.signals


def test_signals_match_whole_words_only():
    assert analyse("Show the address on the invoice").signals == ()
    assert "fix" not in analyse("Add a pytest fixture for the database").signals
    assert "test" not in analyse("Find the shortest path in the graph").signals
    assert "review" not in analyse("Show a preview of the uploaded image").signals


@pytest.mark.parametrize(
    "spellings",
    [
        (
            "Überprüfe den Code",
            "Ueberpruefe den Code",
            "UEBERPRUEFE DEN CODE",
            "überprüfe den code",
        ),
        ("Welche Abwägungen gibt es?", "Welche Abwaegungen gibt es?"),
        ("Die App stürzt ab", "Die App stuerzt ab"),
        ("Lies ein, schließlich zählen", "Lies ein, schliesslich zaehlen"),
    ],
)
def test_umlaut_spellings_read_the_same(spellings):
    results = {(r.road, r.signals) for r in (analyse(text) for text in spellings)}
    assert len(results) == 1, results


def test_umlaut_spellings_match_both_ways_in_the_signals():
    for signal, text in (
        ("prüfung", "Pruefung der Zugriffe"),
        ("pruefung", "Prüfung der Zugriffe"),
    ):
        roads = with_signals("pruefstrecke", en=(), de=(signal,))
        assert Streckenanalyse(roads).analyse(text).road == "pruefstrecke"


def test_case_does_not_matter():
    results = {
        (r.road, r.signals, r.tempo, r.language)
        for r in map(analyse, ("FIX TYPO IN README", "fix typo in readme", "fIx TyPo In ReAdMe"))
    }
    assert results == {("feldweg", ("fix", "typo"), "normal", "en")}


def test_phrases_match_as_phrases_across_spaces_and_hyphens():
    for text in ("Build it full stack", "Build it full-stack", "Build it full   stack"):
        assert analyse(text).road == "teamfahrt"
    assert analyse("The stack is full").road != "teamfahrt"


def test_a_signal_up_front_outweighs_the_same_signal_deep_in_the_text():
    middle = " We changed the rounding in three places and moved the helpers into a module."
    review_first = analyse("Review the payment code." + middle + " There was a crash last week.")
    crash_first = analyse("There was a crash in the payment code." + middle + " Review it later.")
    assert review_first.road == "pruefstrecke"
    assert crash_first.road == "bundesstrasse"


def test_a_shared_verb_is_decided_by_its_object():
    # "fix" is a signal of both the trivial and the bugfix road.
    assert analyse("Fix the indentation in setup.py").road == "feldweg"
    assert analyse("Fix the crash in setup.py").road == "bundesstrasse"
    assert analyse("Fix it").road == "bundesstrasse"  # a tie goes to the harder road


# --- lists and stages ------------------------------------------------------------------------


def test_every_list_style_becomes_an_item():
    task = "Do this:\n- alpha\n* beta\n• gamma\n1. delta\n2) epsilon\na) zeta\n(b) eta  \n"
    result = analyse(task)
    assert result.items == ("alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta")
    assert result.stages == 7


def test_plain_text_is_one_stage_without_items():
    result = analyse("Add CSV export to the reports page. It should include all columns.")
    assert result.items == ()
    assert result.stages == 1


@pytest.mark.parametrize(
    ("task", "stages"),
    [
        ("Parse the file, then clean it, then plot it", 3),
        ("Lies die Datei, danach bereinige sie, anschließend zeichne sie", 3),
        ("Summarise the report and after that translate it", 2),
    ],
)
def test_sequence_markers_count_stages(task, stages):
    result = analyse(task)
    assert result.stages == stages
    assert result.road == "konvoi"


def test_like_items_in_a_list_are_bulk_work():
    task = "Rename these:\n- getUser\n- getOrder\n- getInvoice\n- getPayment"
    assert analyse(task).road == "rallye"
    task = "- fix the login crash\n- fix the export crash\n- fix the upload crash"
    assert analyse(task).road == "rallye"


def test_steps_that_use_the_previous_result_are_a_convoy():
    task = (
        "1. Extract the requirements\n2. Take the output and write user stories\n3. Estimate them"
    )
    assert analyse(task).road == "konvoi"
    assert analyse("Übersetze den Text und fasse danach das Ergebnis zusammen").road == "konvoi"


def test_work_across_named_parts_is_a_team_drive():
    assert analyse("Add tags to articles in the backend, the frontend and the docs").road == (
        "teamfahrt"
    )
    assert analyse("Tags für Artikel in Datenbank, API und Oberfläche").road == "teamfahrt"


def test_many_stages_of_different_work_are_a_long_distance_project():
    task = (
        "New customer portal:\n1. Design the data model\n2. Implement the API\n"
        "3. Build the web frontend\n4. Write integration tests\n5. Review security\n6. Deploy"
    )
    result = analyse(task)
    assert result.road == "langstrecke"
    assert result.stages == 6


def test_a_list_of_unknown_items_is_not_a_project():
    result = analyse("Do this:\n- alpha\n- beta\n- gamma\n- delta\n- epsilon")
    assert result.road == FALLBACK


# --- tempo -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "tempo"),
    [
        ("Urgent: the login is broken", "urgent"),
        ("Fix the export ASAP", "urgent"),
        ("Quick fix for the footer please", "urgent"),
        ("Hotfix for the payment crash", "urgent"),
        ("We need this right now", "urgent"),
        ("Dringend: der Export ist kaputt", "urgent"),
        ("Bitte schnell den Tippfehler korrigieren", "urgent"),
        ("Sofort beheben!", "urgent"),
        ("Das ist eilig", "urgent"),
        ("Review the migration thoroughly", "thorough"),
        ("Please check carefully", "thorough"),
        ("An in-depth review of the auth flow", "thorough"),
        ("Write a detailed design document", "thorough"),
        ("Bitte gründlich prüfen", "thorough"),
        ("Sorgfältig refactoren", "thorough"),
        ("Ausführliche Analyse der Abstürze", "thorough"),
        ("Add a dark mode toggle", "normal"),
        ("Make the import quicker", "normal"),
        ("Mach die Seite schneller", "normal"),
    ],
)
def test_tempo_is_read_from_the_task(task, tempo):
    assert analyse(task).tempo == tempo


def test_an_explicit_tempo_overrides_the_task():
    assert analyse("Urgent hotfix", tempo="thorough").tempo == "thorough"
    assert analyse("Review carefully", tempo="urgent").tempo == "urgent"
    assert analyse("Add a button", tempo="normal").tempo == "normal"


def test_an_unknown_tempo_is_refused():
    with pytest.raises(ValueError, match="tempo"):
        analyse("Add a button", tempo="fast")


# --- difficulty and confidence ---------------------------------------------------------------


def test_an_architecture_migration_is_harder_than_a_typo():
    typo = analyse("Fix typo in README")
    migration = analyse("Design the architecture for migrating our monolith to microservices")
    assert typo.difficulty < 0.3 < 0.7 < migration.difficulty


def test_hard_words_raise_and_easy_words_lower_the_difficulty():
    plain = analyse("Fix the bug in the cache").difficulty
    assert analyse("Fix the race condition bug in the distributed cache").difficulty > plain
    assert analyse("Just fix the small bug in the cache").difficulty < plain
    assert (
        analyse("Behebe den einfachen, kleinen Fehler").difficulty
        < analyse("Behebe den Fehler").difficulty
    )


def test_more_stages_are_harder():
    one = analyse("Parse the file").difficulty
    three = analyse("Parse the file, then clean it, then plot it").difficulty
    assert three > one


def test_difficulty_stays_between_zero_and_one():
    hardest = " ".join(["distributed security race condition performance deadlock"] * 50)
    easiest = "just a simple small tiny trivial minor easy typo"
    assert analyse("Design the architecture: " + hardest).difficulty == 1.0
    assert analyse(easiest).difficulty == 0.0


@pytest.mark.parametrize("task", ["", "   ", "\n\n", "asdf qwer zxcv", "🚗🚗🚗", "42", "..."])
def test_without_any_signal_the_fallback_wins_with_no_confidence(task):
    result = analyse(task)
    assert result.road == FALLBACK
    assert result.confidence == 0.0
    assert result.signals == ()
    assert result.stages == 1


def test_a_clear_task_is_more_certain_than_an_ambiguous_one():
    clear = analyse("Fix the authentication bug: the login crashes with an exception")
    ambiguous = analyse("Review the fix for the crash")
    assert clear.confidence > ambiguous.confidence
    assert 0 < ambiguous.confidence < clear.confidence <= 1


# --- language and size -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "language"),
    [
        ("Fix the bug in the login module", "en"),
        ("Behebe den Fehler im Login-Modul", "de"),
        ("Bitte die Tabelle formatieren", "de"),
        ("Prüfe den Code", "de"),
        ("Refactore das auth module", "de"),
        ("Add a Grüße field to the form and the API", "en"),
    ],
)
def test_language_follows_the_function_words_and_umlauts(task, language):
    assert analyse(task).language == language


def test_prompt_tokens_are_about_a_quarter_of_the_characters():
    assert analyse("").prompt_tokens == 0
    assert analyse("x" * 400).prompt_tokens == 100
    assert analyse("x" * 401).prompt_tokens == 101


# --- the road table is the admin's ---------------------------------------------------------


def test_a_signal_added_in_the_admin_changes_the_road():
    task = "Set up Kubernetes for the staging cluster"
    assert analyse(task).road == FALLBACK
    autobahn = next(road for road in ROADS if road.slug == "autobahn")
    roads = with_signals("autobahn", en=(*autobahn.signals_en, "Kubernetes"))
    result = Streckenanalyse(roads).analyse(task)
    assert result.road == "autobahn"
    assert "Kubernetes" in result.signals


def test_a_signal_removed_in_the_admin_stops_matching():
    feldweg = next(road for road in ROADS if road.slug == "feldweg")
    roads = with_signals("feldweg", en=[s for s in feldweg.signals_en if s not in ("typo", "fix")])
    assert Streckenanalyse(roads).analyse("Fix typo in README").road == "bundesstrasse"


def test_the_fallback_road_is_the_admins_choice():
    roads = [replace(road, is_fallback=road.slug == "feldweg") for road in ROADS]
    assert Streckenanalyse(roads).analyse("asdf").road == "feldweg"


def test_a_table_without_a_fallback_falls_back_to_its_first_road():
    roads = [replace(road, is_fallback=False) for road in ROADS]
    first = min(roads, key=lambda road: (road.order, road.slug)).slug
    assert Streckenanalyse(roads).analyse("asdf").road == first


def test_a_road_without_signals_and_an_empty_table():
    bare = [RoadSpec("only", "Only", 0.5, "g", 0.5, "single", is_fallback=True)]
    assert Streckenanalyse(bare).analyse("Fix the bug").road == "only"
    with pytest.raises(ValueError, match="road"):
        Streckenanalyse([])


def test_one_analyser_per_road_table_and_a_new_one_after_an_edit():
    assert analyser_for(ROADS) is analyser_for(list(reversed(ROADS)))
    edited = with_signals("autobahn", en=("kubernetes",))
    assert analyser_for(edited) is not analyser_for(ROADS)
    assert analyser_for(edited).analyse("Set up Kubernetes").road == "autobahn"


def test_results_are_deterministic():
    shuffled = list(ROADS)
    random.Random(7).shuffle(shuffled)
    other = Streckenanalyse(shuffled)
    for case in LABELLED:
        first = analyse(case["task"])
        assert analyse(case["task"]) == first
        assert other.analyse(case["task"]) == first


def test_analyse_takes_microseconds():
    tasks = [case["task"] for case in LABELLED]
    timings = []
    for task in tasks * 3:
        start = time.perf_counter()
        analyse(task)
        timings.append(time.perf_counter() - start)
    # The benchmark reports ~40 µs; this bound only catches a regression by an order of magnitude.
    assert statistics.median(timings) < 0.001


@pytest.mark.parametrize(
    "task",
    [
        "- a" + " " * 50_000 + "b",
        "all " + "a" * 200_000,
        "fehler" * 30_000 + "_",
        "- fix the bug\n" * 5_000,
        "Fix the bug in módulo ünïcödé 🚗, then danach alle Dateien.\n" * 10_000,
    ],
)
def test_large_and_awkward_input_is_read_in_linear_time(task):
    start = time.perf_counter()
    analyse(task)
    assert time.perf_counter() - start < 3


# --- properties ------------------------------------------------------------------------------

SIGNAL_WORDS = sorted({s for road in ROADS for s in road.signals_en + road.signals_de})
task_text = st.one_of(
    st.text(),
    st.text(max_size=5_000),
    st.lists(
        st.one_of(
            st.sampled_from(SIGNAL_WORDS),
            st.sampled_from(["\n- ", "\n1. ", "\n• ", ", then ", " danach ", ": ", ". ", " "]),
            st.text(max_size=12),
        ),
        max_size=60,
    ).map("".join),
)


def check_in_range(result, task):
    assert result.road in SLUGS
    assert 0.0 <= result.confidence <= 1.0
    assert 0.0 <= result.difficulty <= 1.0
    assert result.tempo in TEMPOS
    assert result.stages >= 1
    assert result.stages >= len(result.items)
    assert all(item and item in task for item in result.items)
    assert set(result.signals) <= set(SIGNAL_WORDS)
    assert result.language in ("en", "de")
    assert result.prompt_tokens == (len(task) + 3) // 4


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(task=task_text, tempo=st.sampled_from([None, *TEMPOS]))
def test_analyse_never_raises_and_stays_in_range(task, tempo):
    result = analyse(task, tempo=tempo)
    check_in_range(result, task)
    if tempo:
        assert result.tempo == tempo


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(task=st.text(min_size=1, max_size=50).map(lambda chunk: chunk * 20_000))
def test_huge_unicode_input_stays_in_range(task):
    check_in_range(analyse(task), task)
