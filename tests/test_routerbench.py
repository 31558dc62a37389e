"""RouterBench tables and the routing metrics, checked against answers worked out by hand."""

import csv
from pathlib import Path

import pytest

from garage import routerbench as rb

SMALL = Path(__file__).parent / "fixtures" / "routerbench_small"
MODELS = ("a", "b", "c")
COST = {"a": 0.001, "b": 0.002, "c": 0.004}
# Per prompt: scores of a, b, c ("" = missing). p4: nobody right, b has no score.
SCORES = {
    "p1": ("1.0", "1.0", "1.0"),
    "p2": ("0.0", "1.0", "1.0"),
    "p3": ("0.0", "0.0", "1.0"),
    "p4": ("0.0", "", "0.0"),
}


def write_table(directory: Path, scores=SCORES, cost=COST, name="tiny.csv") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    models = list(cost)
    header = ["", "sample_id", "prompt", "eval_name", *models]
    header += [f"{m}|model_response" for m in models] + [f"{m}|total_cost" for m in models]
    header.append("oracle_model_to_route_to")
    with (directory / name).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for n, (prompt, row) in enumerate(scores.items()):
            writer.writerow(
                [
                    n,
                    f"tiny.{n}",
                    repr([f"Question {prompt}?"]),
                    "tiny",
                    *row,
                    *(repr([f"{m} says {prompt}"]) for m in models),
                    *(cost[m] for m in models),
                    "a",
                ]
            )
    return directory


@pytest.fixture
def tiny(tmp_path) -> rb.Table:
    return rb.load(write_table(tmp_path / "tiny"))


def test_loads_the_committed_sample_in_routerbench_format():
    table = rb.load(SMALL)
    assert len(table.rows) == 30
    assert len(table.models) == 11
    assert "gpt-4-1106-preview" in table.models
    assert {r.eval_name for r in table.rows} == {"arc-challenge", "mbpp", "winogrande"}
    row = table.rows[0]
    assert row.prompt.endswith("Answer:")
    assert not row.prompt.startswith(("['", '["'))  # the list literal is unwrapped
    assert all(isinstance(c, float) for c in row.costs.values())


def test_an_empty_score_cell_is_missing_not_wrong(tiny):
    p4 = tiny.row("Question p4?")
    assert p4.scores == {"a": 0.0, "b": None, "c": 0.0}
    # b is judged on three prompts only: 2 of 3 right
    assert rb.single_model(tiny.rows, "b").accuracy == pytest.approx(2 / 3)
    assert rb.single_model(tiny.rows, "b").judged == 3


def test_answers_are_unwrapped_and_costs_read(tiny):
    p2 = tiny.row("Question p2?")
    assert p2.responses["c"] == "c says p2"
    assert p2.costs == COST


def test_single_models_accuracy_and_cost(tiny):
    points = {m: rb.single_model(tiny.rows, m) for m in MODELS}
    assert points["a"].accuracy == pytest.approx(0.25)
    assert points["c"].accuracy == pytest.approx(0.75)
    assert points["c"].mean_cost_usd == pytest.approx(0.004)


def test_oracle_takes_the_cheapest_correct_model_else_the_cheapest(tiny):
    assert rb.oracle_choices(tiny.rows, MODELS) == ["a", "b", "c", "a"]
    oracle = rb.oracle(tiny.rows, MODELS)
    assert oracle.accuracy == pytest.approx(0.75)
    assert oracle.mean_cost_usd == pytest.approx((0.001 + 0.002 + 0.004 + 0.001) / 4)


def test_hull_drops_points_below_the_chord_and_after_the_top():
    points = [(1, 0.5), (2, 0.6), (3, 0.9), (4, 0.8)]
    assert rb.hull(points) == [(1, 0.5), (3, 0.9)]
    assert rb.hull([(1, 0.5), (2, 0.4)]) == [(1, 0.5)]


def test_aiq_by_hand():
    # hull (1, .5) → (3, .9), flat to 4: area 2·0.7 + 1·0.9 = 2.3, over the range 0…4
    assert rb.aiq([(1, 0.5), (2, 0.6), (3, 0.9)], 4) == pytest.approx(2.3 / 4)
    # a single point: flat from its cost to the largest cost
    assert rb.aiq([(1, 0.8)], 4) == pytest.approx(0.8 * 3 / 4)
    assert rb.aiq([(4, 0.9)], 4) == 0.0


def test_aiq_of_the_tiny_models(tiny):
    points = {m: rb.single_model(tiny.rows, m) for m in MODELS}
    xy = [(p.mean_cost_usd, p.accuracy) for p in points.values()]
    # hull a → b → c: 0.001·(0.25 + 2/3)/2 + 0.002·(2/3 + 0.75)/2 = 0.001875; / 0.004
    assert rb.aiq(xy, 0.004) == pytest.approx(0.46875)
    assert rb.aiq(xy[:1], 0.004) == pytest.approx(0.25 * 0.75)


def test_random_router_at_equal_cost_mixes_the_neighbouring_models(tiny):
    points = {m: rb.single_model(tiny.rows, m) for m in MODELS}
    # halfway between b (0.002, 2/3) and c (0.004, 3/4)
    assert rb.random_at_cost(points, 0.003).accuracy == pytest.approx((2 / 3 + 0.75) / 2)
    assert rb.random_at_cost(points, 0.01).accuracy == pytest.approx(0.75)
    below = rb.random_at_cost(points, 0.0001)
    assert (below.accuracy, below.mean_cost_usd) == (pytest.approx(0.25), pytest.approx(0.001))


def test_uniform_random_router_averages_the_judged_models(tiny):
    uniform = rb.random_uniform(tiny.rows, MODELS)
    # per prompt 1, 2/3, 1/3, 0 (b missing on p4)
    assert uniform.accuracy == pytest.approx(0.5)
    assert uniform.mean_cost_usd == pytest.approx(0.007 / 3)


def test_models_map_to_tiers_by_mean_cost(tiny):
    mapping = rb.map_models(tiny)
    assert [(m.model, m.tier) for m in mapping] == [("a", 1), ("b", 3), ("c", 5)]
    given = rb.map_models(tiny, {"c": "dear-gear"})
    assert given[-1].gear == "dear-gear"


def test_gear_names_are_valid_slugs_without_collisions():
    taken: set[str] = set()
    first = rb.gear_name("mistralai/Mistral-7B Chat", taken)
    taken.add(first)
    assert first == "mistral-7b-chat"
    assert rb.gear_name("other/mistral-7b-chat", taken) == "other-mistral-7b-chat"


def test_folds_are_disjoint_cover_everything_and_are_stratified():
    table = rb.load(SMALL)
    folds = rb.folds(table, 3, seed=1)
    flat = sorted(i for f in folds for i in f)
    assert flat == list(range(len(table.rows)))
    for fold in folds:
        assert {table.rows[i].eval_name for i in fold} == {"arc-challenge", "mbpp", "winogrande"}


def test_a_file_without_cost_columns_is_refused(tmp_path):
    (tmp_path / "bad.csv").write_text("prompt,x\n\"['q']\",1\n", encoding="utf-8")
    with pytest.raises(rb.TableError, match="total_cost"):
        rb.load(tmp_path)


def test_files_with_different_models_are_refused(tmp_path):
    write_table(tmp_path, name="one.csv")
    write_table(tmp_path, cost={"a": 0.001, "z": 0.002}, scores={"p": ("1", "0")}, name="two.csv")
    with pytest.raises(rb.TableError, match="other models"):
        rb.load(tmp_path)
