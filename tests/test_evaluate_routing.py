"""evaluate_routing: the real engine over recorded outcomes, in a database of its own."""

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from fahrtenbuch.models import Trip
from garage.models import Gear, Provider

SMALL = Path(__file__).parent / "fixtures" / "routerbench_small"


def evaluate(*args: str) -> str:
    out = StringIO()
    call_command("evaluate_routing", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def report(db, tmp_path) -> dict:
    plot = tmp_path / "plane.png"
    text = evaluate(
        "--data", str(SMALL), "--folds", "3", "--curve-trips", "20", "--json", "--in-place",
        "--plot", str(plot),
    )  # fmt: skip
    data = json.loads(text)
    data["_plot"] = plot
    return data


def test_json_report_has_the_promised_keys(report):
    router = report["router"]
    for key in ("accuracy", "mean_cost_usd", "aiq"):
        assert isinstance(router[key], float)
    assert len(report["models"]) == 11
    gpt4 = report["models"]["gpt-4-1106-preview"]
    assert {"accuracy", "mean_cost_usd", "aiq", "gear", "tier"} <= set(gpt4)
    assert gpt4["tier"] == 5
    assert {"accuracy", "mean_cost_usd"} <= set(report["oracle"])
    assert {"accuracy", "mean_cost_usd", "aiq", "uniform"} <= set(report["random"])
    assert set(report["candidates"]) == {"logreg", "knn"}


def test_every_held_out_prompt_went_through_the_engine(report):
    router = report["router"]
    assert router["prompts"] == report["data"]["prompts"] == 30
    assert router["learned_decisions"] == 30
    assert router["explored"] == 0  # cross-validation measures the router, ε = 0
    assert router["engine_agrees_with_router"] == 1.0
    assert sum(router["choices"].values()) == 30


def test_baselines_are_consistent(report):
    models = report["models"].values()
    assert report["oracle"]["accuracy"] >= max(m["accuracy"] for m in models)
    assert report["random"]["mean_cost_usd"] == pytest.approx(report["router"]["mean_cost_usd"])
    dearest = max(models, key=lambda m: m["mean_cost_usd"])
    assert dearest["aiq"] == 0.0  # nothing left of the cost range after the dearest model


def test_learning_curve_and_plot(report):
    blocks = report["learning_curve"]["blocks"]
    assert blocks[-1]["trips"] == 20
    assert 0 < blocks[0]["epsilon"] <= 0.1
    assert report["_plot"].read_bytes().startswith(b"\x89PNG")


def test_train_and_test_directories(db, tmp_path):
    text = evaluate("--train", str(SMALL), "--test", str(SMALL), "--curve-trips", "0", "--in-place")
    assert "train/test" in text
    assert "clutch engine + Lernrouter" in text


def test_too_little_training_data_is_a_clear_error(db):
    with pytest.raises(CommandError, match="use fewer folds"):
        evaluate("--data", str(SMALL), "--folds", "2", "--in-place")


def test_refuses_a_database_with_trips_unless_forced(db):
    Trip.objects.create(task="a real trip")
    with pytest.raises(CommandError, match="has trips"):
        evaluate("--data", str(SMALL), "--in-place")


@pytest.mark.parametrize(
    "args",
    [(), ("--train", "x"), ("--data", "x", "--train", "y", "--test", "z")],
)
def test_argument_errors(db, args):
    with pytest.raises(CommandError):
        evaluate(*args, "--in-place")


def test_by_default_it_runs_in_a_temporary_database_and_leaves_this_one_alone(db):
    Trip.objects.create(task="a real trip")
    text = evaluate("--data", str(SMALL), "--folds", "3", "--curve-trips", "0", "--json")
    assert json.loads(text)["router"]["prompts"] == 30
    assert list(Trip.objects.values_list("task", flat=True)) == ["a real trip"]
    assert not Provider.objects.filter(name="routerbench").exists()
    assert not Gear.objects.filter(name="gpt-4-1106-preview").exists()
