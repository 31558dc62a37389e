"""The routing evaluation's report and its picture: metrics per router, model and baseline.

Built from what a run produced (the held-out prompts, the engine's trips, the router's
choices at each λ); see ``garage.routing_eval`` for the run itself.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from garage import lernrouter
from garage import routerbench as rb

if TYPE_CHECKING:
    from garage.routing_eval import Driven


@dataclass(frozen=True, slots=True)
class Routed:
    """Where the router sent one prompt: ``route`` (a gear, or a kickdown chain), the model
    whose answer it returned, and what it cost in all."""

    route: str
    model: str
    cost_usd: float
    kickdown: bool = False


def route_name(gears: Sequence[str]) -> str:
    return gears[0] if len(gears) == 1 else "kickdown:" + ">".join(gears)


def score_routed(rows: Sequence[rb.Row], routed: Sequence[Routed]) -> rb.Point:
    """Accuracy of the returned answers (judged ones only) and the mean cost of the routes."""
    scores = [row.scores[r.model] for row, r in zip(rows, routed, strict=True)]
    judged = [s for s in scores if s is not None]
    return rb.Point(
        accuracy=sum(judged) / len(judged) if judged else 0.0,
        mean_cost_usd=sum(r.cost_usd for r in routed) / len(rows) if rows else 0.0,
        judged=len(judged),
        prompts=len(rows),
    )


@dataclass
class Run:
    table: rb.Table
    test: rb.Table | None
    mapping: Sequence[rb.ModelGear]
    kind: str
    folds: int
    seed: int
    lam: float
    evaluated: list[rb.Row]  # held-out prompts, in the order they were driven
    engine: list["Driven"]  # what the engine did with each of them
    pure: dict[str, dict[float, list[Routed]]]  # kind → λ → the router's route per prompt
    learning_curve: dict | None
    seconds: float


def point_of(driven: Sequence["Driven"]) -> rb.Point:
    judged = [d.correct for d in driven if d.correct is not None]
    return rb.Point(
        accuracy=sum(judged) / len(judged) if judged else 0.0,
        mean_cost_usd=sum(d.cost_usd for d in driven) / len(driven) if driven else 0.0,
        judged=len(judged),
        prompts=len(driven),
    )


def build(run: Run) -> dict:
    """The report ``evaluate_routing --json`` prints."""
    table, test = run.table, run.test
    mapping, evaluated, engine, pure = run.mapping, run.evaluated, run.engine, run.pure
    lam = run.lam
    models = {m.model: rb.single_model(evaluated, m.model) for m in mapping}
    router_point = point_of(engine)
    router_curve = {
        kind: [(x, score_routed(evaluated, routed)) for x, routed in pure[kind].items()]
        for kind in pure
    }
    all_costs = (
        [p.mean_cost_usd for p in models.values()]
        + [p.mean_cost_usd for pts in router_curve.values() for _, p in pts]
        + [router_point.mean_cost_usd]
    )
    max_cost = max(all_costs)

    def router_aiq(points: list[tuple[float, rb.Point]], extra: rb.Point | None = None) -> float:
        xy = [(p.mean_cost_usd, p.accuracy) for _, p in points]
        if extra is not None:
            xy.append((extra.mean_cost_usd, extra.accuracy))
        return rb.aiq(xy, max_cost)

    main_curve = router_curve.get(run.kind) or []
    random_point = rb.random_at_cost(models, router_point.mean_cost_usd)
    uniform = rb.random_uniform(evaluated, table.models)
    oracle = rb.oracle(evaluated, table.models)
    pure_main = pure.get(run.kind, {}).get(lam)
    agreement = (
        sum(d.route == r.route for d, r in zip(engine, pure_main, strict=True)) / len(engine)
        if pure_main
        else None
    )
    by_model = {m.model: m for m in mapping}
    best = max(models, key=lambda m: models[m].accuracy)
    report = {
        "data": {
            "sources": list(table.sources) + (list(test.sources) if test else []),
            "prompts": len(evaluated),
            "models": list(table.models),
        },
        "setup": {
            "mode": "cross-validation" if test is None else "train/test",
            "folds": run.folds,
            "seed": run.seed,
            "kind": run.kind,
            "lambda": lam,
            "zone_lambda": dict(lernrouter.ZONE_LAMBDA),
            "mapping": [
                {"model": m.model, "gear": m.gear, "tier": m.tier, "mean_cost_usd": m.mean_cost_usd}
                for m in mapping
            ],
            "seconds": round(run.seconds, 1),
        },
        "router": {
            **router_point.as_dict(),
            "aiq": round(router_aiq(main_curve, router_point), 6),
            "lambda": lam,
            "learned_decisions": sum(d.learned for d in engine),
            "explored": sum(d.explored for d in engine),
            "engine_agrees_with_router": None if agreement is None else round(agreement, 4),
            "choices": dict(Counter(d.model for d in engine).most_common()),
            "routes": dict(Counter(d.route for d in engine).most_common()),
            "kickdown": {
                "trips": sum(d.kickdown for d in engine),
                "escalated": sum(d.escalated for d in engine),
            },
            "curve": [
                {
                    "lambda": x,
                    **p.as_dict(),
                    "kickdowns": sum(r.kickdown for r in pure[run.kind][x]),
                }
                for x, p in main_curve
            ],
        },
        "candidates": {
            kind: {
                "aiq": round(router_aiq(points), 6),
                "curve": [{"lambda": x, **p.as_dict()} for x, p in points],
            }
            for kind, points in router_curve.items()
        },
        "models": {
            name: {
                **p.as_dict(),
                "gear": by_model[name].gear,
                "tier": by_model[name].tier,
                "aiq": round(rb.aiq([(p.mean_cost_usd, p.accuracy)], max_cost), 6),
            }
            for name, p in models.items()
        },
        "random": {
            **random_point.as_dict(),
            "aiq": round(
                rb.aiq([(p.mean_cost_usd, p.accuracy) for p in models.values()], max_cost), 6
            ),
            "how": "a coin between two single models, weighted to the router's mean cost "
            "(the upper hull of the models' points)",
            "uniform": uniform.as_dict(),
        },
        "oracle": oracle.as_dict(),
        "max_cost_usd": max_cost,
        "best_model": best,
        "targets": _targets(router_point, models[best], best),
        "learning_curve": run.learning_curve,
    }
    return report


def _targets(router: rb.Point, best: rb.Point, name: str) -> dict:
    return {
        "best_model": name,
        "within_1_point_at_half_cost": router.accuracy >= best.accuracy - 0.01
        and router.mean_cost_usd <= best.mean_cost_usd / 2,
        "best_accuracy_at_30_percent_cost": router.accuracy >= best.accuracy
        and router.mean_cost_usd <= best.mean_cost_usd * 0.3,
        "accuracy_gap_points": round((router.accuracy - best.accuracy) * 100, 2),
        "cost_share_of_best": round(router.mean_cost_usd / best.mean_cost_usd, 4)
        if best.mean_cost_usd
        else None,
    }


def _drawn(curve: list[tuple[float, float]], steps: int = 200) -> list[tuple[float, float]]:
    """A hull sampled densely, so its straight (linear-cost) pieces bend right on a log axis."""
    if len(curve) < 2:
        return curve
    start, end = curve[0][0], curve[-1][0]
    xs = [start + (end - start) * i / steps for i in range(steps + 1)]
    return [(x, rb.hull_value(curve, x)) for x in xs]


def plot(report: dict, path: Path) -> Path:
    """The cost–accuracy plane: every model, the router's curve and point, random, oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 7), dpi=120)
    models = report["models"]
    for name, p in models.items():
        ax.scatter(p["mean_cost_usd"], p["accuracy"] * 100, color="tab:gray", zorder=3)
        ax.annotate(
            name.rsplit("/", 1)[-1],
            (p["mean_cost_usd"], p["accuracy"] * 100),
            textcoords="offset points",
            xytext=(4, -10),
            fontsize=7,
            color="dimgray",
        )
    model_hull = _drawn(rb.hull((p["mean_cost_usd"], p["accuracy"]) for p in models.values()))
    ax.plot(
        [x for x, _ in model_hull],
        [y * 100 for _, y in model_hull],
        "--",
        color="tab:gray",
        label=f"random mix of models (AIQ {report['random']['aiq']:.3f})",
    )
    router = report["router"]
    kind = report["setup"]["kind"]
    for name, candidate in report["candidates"].items():
        points = [(c["mean_cost_usd"], c["accuracy"]) for c in candidate["curve"]]
        curve = _drawn(rb.hull(points))
        ax.plot(
            [x for x, _ in curve],
            [y * 100 for _, y in curve],
            "-" if name == kind else ":",
            color="tab:blue" if name == kind else "tab:cyan",
            label=f"Lernrouter {name} + kickdown, λ sweep (AIQ {candidate['aiq']:.3f})",
        )
        if name == kind:
            ax.scatter([x for x, _ in points], [y * 100 for _, y in points], s=8, color="tab:blue")
    ax.scatter(
        router["mean_cost_usd"],
        router["accuracy"] * 100,
        marker="*",
        s=220,
        color="tab:red",
        zorder=4,
        label=f"clutch engine, λ={router['lambda']:g} (green zone): "
        f"{router['accuracy'] * 100:.1f} %, {router['mean_cost_usd']:.5f} USD",
    )
    oracle = report["oracle"]
    ax.scatter(
        oracle["mean_cost_usd"],
        oracle["accuracy"] * 100,
        marker="D",
        color="tab:green",
        zorder=4,
        label=f"oracle: {oracle['accuracy'] * 100:.1f} %",
    )
    ax.set_xscale("log")
    ax.set_xlabel("mean cost per prompt (USD, log scale)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(
        f"Routing on {', '.join(report['data']['sources'])} "
        f"({report['setup']['mode']}, {report['data']['prompts']} prompts)",
        fontsize=9,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
