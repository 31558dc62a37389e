"""RouterBench-format outcome tables: loading, mapping models to gears, and the metrics.

A table holds, per prompt, every model's recorded score (1 correct, 0 wrong, empty = missing),
answer and cost. The metrics follow RouterBench (Hu et al., 2024):

- accuracy: mean score over the prompts where the chosen model has a score (missing is not 0);
- mean cost: mean recorded USD per prompt;
- AIQ: the non-decreasing convex hull of a router's (mean cost, accuracy) points, extended flat
  to the largest cost seen, area under it divided by that cost range. As in RouterBench's
  reference code, the range runs from 0 to the largest cost and a curve has no area left of
  its cheapest point, so one model's AIQ is ``accuracy · (1 − cost / largest cost)``;
- the random router at equal cost: the best a coin can do with single models, the upper hull
  of their points (RouterBench's "zero router") read at the router's cost;
- the oracle: per prompt the cheapest model that answered correctly, else the cheapest model.

Plain Python, no Django: the evaluation command, the replay and the tests share it.
"""

import ast
import csv
import itertools
import math
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

META_COLUMNS = frozenset({"", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to"})
COST_SUFFIX = "|total_cost"
RESPONSE_SUFFIX = "|model_response"
TIERS = 5

csv.field_size_limit(2**31 - 1)  # recorded answers can be long


class TableError(ValueError):
    """A file that is not in RouterBench format; the message names the file and the problem."""


@dataclass(frozen=True, slots=True)
class Row:
    sample_id: str
    eval_name: str
    prompt: str
    scores: Mapping[str, float | None]  # model → 1.0 / 0.0 / None (missing)
    costs: Mapping[str, float]
    responses: Mapping[str, str]


@dataclass(frozen=True)
class Table:
    models: tuple[str, ...]
    rows: tuple[Row, ...]
    sources: tuple[str, ...] = ()
    _by_prompt: dict[str, Row] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for row in self.rows:
            self._by_prompt.setdefault(row.prompt, row)  # a repeated prompt keeps its first row

    def row(self, prompt: str) -> Row | None:
        return self._by_prompt.get(prompt)

    def subset(self, indices: Iterable[int]) -> "Table":
        return Table(self.models, tuple(self.rows[i] for i in indices), self.sources)

    def mean_cost(self, model: str) -> float:
        return sum(r.costs[model] for r in self.rows) / len(self.rows) if self.rows else 0.0


def _text(cell: str) -> str:
    """A recorded answer: a Python list literal of one string, or plain text."""
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return cell
    if isinstance(value, list | tuple) and value:
        return str(value[0])
    return str(value)


def _score(cell: str, where: str) -> float | None:
    cell = cell.strip()
    if not cell:
        return None
    try:
        value = float(cell)
    except ValueError:
        raise TableError(f"{where}: score {cell!r} is not a number") from None
    if math.isnan(value):
        return None
    return value


def _models(header: Sequence[str], name: str) -> tuple[str, ...]:
    models = tuple(column[: -len(COST_SUFFIX)] for column in header if column.endswith(COST_SUFFIX))
    missing = [m for m in models if m not in header]
    if "prompt" not in header:
        raise TableError(f"{name}: no 'prompt' column")
    if not models:
        raise TableError(f"{name}: no '<model>{COST_SUFFIX}' column")
    if missing:
        raise TableError(f"{name}: no score column for {', '.join(missing)}")
    return models


def load_file(path: Path) -> Table:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        models = _models(reader.fieldnames or [], path.name)
        rows = []
        for number, raw in enumerate(reader, start=2):
            where = f"{path.name} line {number}"
            try:
                prompts = ast.literal_eval(raw["prompt"])
                prompt = str(prompts[0]) if isinstance(prompts, list | tuple) else str(prompts)
            except (ValueError, SyntaxError, IndexError):
                prompt = raw["prompt"]
            try:
                costs = {m: float(raw[f"{m}{COST_SUFFIX}"] or 0.0) for m in models}
            except ValueError as exc:
                raise TableError(f"{where}: a cost is not a number ({exc})") from None
            rows.append(
                Row(
                    sample_id=raw.get("sample_id") or f"{path.stem}:{number}",
                    eval_name=raw.get("eval_name") or path.stem,
                    prompt=prompt,
                    scores={m: _score(raw[m], where) for m in models},
                    costs=costs,
                    responses={m: _text(raw.get(f"{m}{RESPONSE_SUFFIX}") or "") for m in models},
                )
            )
    return Table(models, tuple(rows), (path.name,))


def load(directory: Path | str) -> Table:
    """Every ``*.csv`` of a directory (or one file); all files must name the same models."""
    directory = Path(directory)
    files = [directory] if directory.is_file() else sorted(directory.glob("*.csv"))
    if not files:
        raise TableError(f"{directory}: no .csv file")
    tables = [load_file(f) for f in files]
    models = tables[0].models
    for table in tables[1:]:
        if set(table.models) != set(models):
            raise TableError(
                f"{table.sources[0]} names other models than {tables[0].sources[0]}: "
                f"{sorted(set(table.models) ^ set(models))}"
            )
    rows = tuple(row for table in tables for row in table.rows)
    return Table(models, rows, tuple(f.name for f in files))


# --- models as gears -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelGear:
    model: str
    gear: str
    tier: int
    mean_cost_usd: float


def gear_name(model: str, taken: set[str]) -> str:
    """A gear name for a model: the part after the owner, as a slug; the owner is added back
    when two models would share a name."""

    def slug(text: str) -> str:
        return re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-.") or "model"

    name = slug(model.rsplit("/", 1)[-1])[:60]
    if name in taken:
        name = slug(model)[:60]
    return name


def map_models(table: Table, given: Mapping[str, str] | None = None) -> tuple[ModelGear, ...]:
    """Each model becomes a gear; tiers G1…G5 spread evenly over the models sorted by mean
    cost (cheapest G1, dearest G5). ``given`` maps a model to a gear name, overriding the
    derived name."""
    order = sorted(table.models, key=lambda m: (table.mean_cost(m), m))
    n = len(order)
    taken: set[str] = set()
    mapped = []
    for rank, model in enumerate(order):
        name = (given or {}).get(model) or gear_name(model, taken)
        taken.add(name)
        tier = 1 if n == 1 else 1 + round(rank * (TIERS - 1) / (n - 1))
        mapped.append(ModelGear(model, name, tier, table.mean_cost(model)))
    return tuple(mapped)


# --- metrics -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Point:
    """One router setting (or one model) on the cost–accuracy plane."""

    accuracy: float
    mean_cost_usd: float
    judged: int = 0  # prompts with a score for the chosen model
    prompts: int = 0

    def as_dict(self) -> dict:
        return {
            "accuracy": round(self.accuracy, 6),
            "mean_cost_usd": round(self.mean_cost_usd, 8),
            "judged": self.judged,
            "prompts": self.prompts,
        }


def score_choices(rows: Sequence[Row], choices: Sequence[str]) -> Point:
    """Accuracy and mean cost when prompt i goes to model ``choices[i]``."""
    scores = [row.scores[model] for row, model in zip(rows, choices, strict=True)]
    judged = [s for s in scores if s is not None]
    cost = sum(row.costs[model] for row, model in zip(rows, choices, strict=True))
    return Point(
        accuracy=sum(judged) / len(judged) if judged else 0.0,
        mean_cost_usd=cost / len(rows) if rows else 0.0,
        judged=len(judged),
        prompts=len(rows),
    )


def single_model(rows: Sequence[Row], model: str) -> Point:
    return score_choices(rows, [model] * len(rows))


def oracle_choices(rows: Sequence[Row], models: Sequence[str]) -> list[str]:
    """Per prompt the cheapest model that answered correctly, else the cheapest model."""
    choices = []
    for row in rows:
        by_cost = sorted(models, key=lambda m: (row.costs[m], m))
        correct = [m for m in by_cost if (row.scores[m] or 0) >= 1]
        choices.append(correct[0] if correct else by_cost[0])
    return choices


def oracle(rows: Sequence[Row], models: Sequence[str]) -> Point:
    return score_choices(rows, oracle_choices(rows, models))


def hull(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-decreasing upper convex hull of (cost, accuracy) points, cheapest first.

    Starts at the cheapest point (the most accurate among equally cheap ones); each next
    vertex is the point reached with the steepest non-negative slope, so the curve never
    falls and is concave: any point on it is reached by mixing its two neighbours at random.
    """
    pts = sorted(set(points))
    if not pts:
        return []
    start_cost = pts[0][0]
    start = max(p for p in pts if p[0] == start_cost)
    chain = [start]
    rest = [p for p in pts if p[0] > start_cost]
    while rest:
        x0, y0 = chain[-1]
        best = max(rest, key=lambda p: ((p[1] - y0) / (p[0] - x0), p[0]))
        if best[1] <= y0:
            break
        chain.append(best)
        rest = [p for p in rest if p[0] > best[0]]
    return chain


def hull_value(curve: Sequence[tuple[float, float]], cost: float) -> float | None:
    """The hull's accuracy at ``cost`` (flat after its last point); None left of its start."""
    if not curve or cost < curve[0][0]:
        return None
    for (x0, y0), (x1, y1) in itertools.pairwise(curve):
        if cost <= x1:
            return y0 + (y1 - y0) * (cost - x0) / (x1 - x0)
    return curve[-1][1]


def aiq(points: Iterable[tuple[float, float]], max_cost: float) -> float:
    """Area under the non-decreasing convex hull, extended flat to ``max_cost``, divided by
    the cost range 0…``max_cost``."""
    curve = hull(points)
    if not curve or max_cost <= 0:
        return 0.0
    if curve[-1][0] < max_cost:
        curve = [*curve, (max_cost, curve[-1][1])]
    area = sum(
        (x1 - x0) * (y0 + y1) / 2
        for (x0, y0), (x1, y1) in itertools.pairwise(curve)
        if x0 < max_cost
    )
    return area / max_cost


def random_at_cost(model_points: Mapping[str, Point], cost: float) -> Point:
    """The random router at equal cost: per prompt a coin picks one of two single models,
    weighted so the mean cost is ``cost``. The best such pair lies on the models' hull."""
    curve = hull((p.mean_cost_usd, p.accuracy) for p in model_points.values())
    accuracy = hull_value(curve, cost)
    if accuracy is None:  # cheaper than the cheapest model: it is all a coin can reach
        accuracy, cost = curve[0][1], curve[0][0]
    return Point(accuracy=accuracy, mean_cost_usd=cost)


def random_uniform(rows: Sequence[Row], models: Sequence[str]) -> Point:
    """Every prompt to a model drawn uniformly: the expected accuracy and cost."""
    accuracy = []
    for row in rows:
        judged = [row.scores[m] for m in models if row.scores[m] is not None]
        if judged:
            accuracy.append(sum(judged) / len(judged))
    cost = sum(sum(row.costs[m] for m in models) / len(models) for row in rows)
    return Point(
        accuracy=sum(accuracy) / len(accuracy) if accuracy else 0.0,
        mean_cost_usd=cost / len(rows) if rows else 0.0,
        judged=len(accuracy),
        prompts=len(rows),
    )


def folds(table: Table, k: int, *, seed: int = 0) -> list[list[int]]:
    """Row indices in ``k`` folds, shuffled with ``seed`` and stratified by benchmark."""
    if k < 2:
        raise ValueError("cross-validation needs at least 2 folds")
    rng = random.Random(seed)
    by_eval: dict[str, list[int]] = {}
    for i, row in enumerate(table.rows):
        by_eval.setdefault(row.eval_name, []).append(i)
    result: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for name in sorted(by_eval):
        indices = by_eval[name]
        rng.shuffle(indices)
        for j, index in enumerate(indices):
            result[(offset + j) % k].append(index)
        offset += len(indices)
    return [sorted(f) for f in result]
