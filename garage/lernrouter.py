"""Lernrouter: a router that reads the prompt and learns from the trip log which gear succeeds.

For a new prompt it predicts, per gear, the probability that the gear's answer is good and the
cost of the call, and chooses the gear with the highest

    utility = P(success) − λ · cost / reference cost

where the reference cost is the mean trip cost of the dearest gear it knows. λ is the success
probability one would give up to save the dearest gear's price on one trip; it follows the
budget zone (``ZONE_LAMBDA``): with a full tank (green) a few points of success are worth the
dearest gear, with a low one (orange, red) only a large gain is.

Two models over TF-IDF features of the prompt (words and word pairs) are on offer:
``logreg``, one logistic regression per gear (the default: the better of the two in
cross-validation on RouterBench), and ``knn``, the smoothed success rate of the gear on the
most similar prompts. Cost is estimated from the gear's trips on the most similar prompts.

Training data is the trip log: the trip's prompt, gear and cost; the outcome is the user's
feedback when given (thumbs up = success, thumbs down = failure), else the trip's status
(a failed call is a failure; a call that merely returned counts as a success with the small
weight ``UNJUDGED_WEIGHT``, since it says nothing about the answer's quality).
"""

import logging
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from garage import kickdown

logger = logging.getLogger(__name__)

KINDS = ("logreg", "knn")
ZONE_LAMBDA: Mapping[str, float] = {"green": 0.07, "yellow": 0.12, "orange": 0.25, "red": 1.0}
MIN_TRIPS_PER_GEAR = 20
UNJUDGED_WEIGHT = 0.25
LOGREG_C = 0.3
KNN_QUALITY_K = 50
KNN_COST_K = 30
PRIOR_STRENGTH = 2.0  # pseudo-trips at the gear's mean success rate (knn)
MAX_FEATURES = 40_000
FORMAT_VERSION = 2


def zone_lambda(zone: str) -> float:
    return ZONE_LAMBDA.get(zone, ZONE_LAMBDA["green"])


@dataclass(frozen=True, slots=True)
class Sample:
    """One trip as training data."""

    prompt: str
    gear: str
    success: float  # 1.0 or 0.0
    cost_usd: float
    weight: float = 1.0
    answer: str = ""  # the trip's output (the kickdown compares the letters of choice answers)


@dataclass(frozen=True, slots=True)
class Estimate:
    gear: str
    p_success: float
    cost_usd: float
    utility: float

    def as_dict(self) -> dict:
        return {
            "gear": self.gear,
            "p_success": round(self.p_success, 4),
            "cost_usd": round(self.cost_usd, 8),
            "utility": round(self.utility, 4),
        }


@dataclass
class _GearData:
    rows: np.ndarray  # indices into the prompt matrix
    success: np.ndarray
    weight: np.ndarray
    cost: np.ndarray
    mean_success: float
    mean_cost: float


@dataclass
class LernRouter:
    """A trained router; plain data plus the fitted vectoriser, picklable."""

    kind: str
    vectorizer: TfidfVectorizer
    gears: tuple[str, ...]
    prompts: sparse.csr_matrix  # unique training prompts × features (L2-normalised rows)
    per_gear: dict[str, _GearData]
    coef: np.ndarray | None  # features × gears (logreg)
    intercept: np.ndarray | None
    reference_cost_usd: float
    samples: int
    trained_at: str
    skipped_gears: dict[str, int] = field(default_factory=dict)  # gear → trips, too few
    schaltplan: kickdown.Schaltplan = field(default_factory=kickdown.Schaltplan)
    version: int = FORMAT_VERSION

    # --- predicting ----------------------------------------------------------------------

    def estimates(
        self, prompt: str, lam: float, allowed: Iterable[str] | None = None
    ) -> list[Estimate]:
        """Every known (and allowed) gear with its estimate, best utility first."""
        names = self.gears if allowed is None else tuple(g for g in self.gears if g in allowed)
        if not names:
            return []
        q = self.vectorizer.transform([prompt])
        sims = self.prompts @ q.toarray().ravel()  # sparse × dense: 5× faster than sparse²
        if self.kind == "logreg":
            logits = np.asarray(q @ self.coef).ravel() + self.intercept
            p_all = 1.0 / (1.0 + np.exp(-logits))
        out = []
        for name in names:
            data = self.per_gear[name]
            gear_sims = sims[data.rows]
            cost = _top_mean(gear_sims, data.cost, KNN_COST_K)
            if self.kind == "logreg":
                p = float(p_all[self.gears.index(name)])
            else:
                p = _smoothed_rate(gear_sims, data, KNN_QUALITY_K)
            utility = p - lam * cost / self.reference_cost_usd
            out.append(Estimate(name, p, cost, utility))
        out.sort(key=lambda e: (-e.utility, e.cost_usd, e.gear))
        return out

    def choose(self, prompt: str, lam: float, allowed: Iterable[str] | None = None) -> str | None:
        ranked = self.estimates(prompt, lam, allowed)
        return ranked[0].gear if ranked else None

    def summary(self) -> dict:
        return {
            "kind": self.kind,
            "samples": self.samples,
            "gears": {
                g: {
                    "trips": len(self.per_gear[g].rows),
                    "success_rate": round(self.per_gear[g].mean_success, 4),
                    "mean_cost_usd": round(self.per_gear[g].mean_cost, 8),
                }
                for g in self.gears
            },
            "too_few_trips": self.skipped_gears,
            "kickdown": self.schaltplan.summary(),
            "reference_cost_usd": self.reference_cost_usd,
            "trained_at": self.trained_at,
        }


def _top_mean(sims: np.ndarray, values: np.ndarray, k: int) -> float:
    if len(values) <= k:
        return float(values.mean())
    top = np.argpartition(-sims, k)[:k]
    return float(values[top].mean())


def _smoothed_rate(sims: np.ndarray, data: _GearData, k: int) -> float:
    top = np.argpartition(-sims, k)[:k] if len(sims) > k else np.arange(len(sims))
    w = data.weight[top]
    return float(
        (np.dot(w, data.success[top]) + PRIOR_STRENGTH * data.mean_success)
        / (w.sum() + PRIOR_STRENGTH)
    )


# --- training ------------------------------------------------------------------------------


class NotEnoughData(Exception):
    """Fewer than two gears with enough trips: the road table keeps deciding."""


def fit(
    samples: list[Sample], *, kind: str = "logreg", min_trips: int = MIN_TRIPS_PER_GEAR
) -> LernRouter:
    """Train a router on trips; gears with fewer than ``min_trips`` trips are left out."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    counts: dict[str, int] = {}
    for s in samples:
        counts[s.gear] = counts.get(s.gear, 0) + 1
    gears = tuple(sorted(g for g, n in counts.items() if n >= min_trips))
    skipped = {g: n for g, n in sorted(counts.items()) if n < min_trips}
    if len(gears) < 2:
        raise NotEnoughData(
            f"{len(gears)} gear(s) with {min_trips} trips or more; the router needs two"
        )
    samples = [s for s in samples if s.gear in gears]
    unique: dict[str, int] = {}
    for s in samples:
        unique.setdefault(s.prompt, len(unique))
    texts = list(unique)
    vectorizer = TfidfVectorizer(
        sublinear_tf=True,
        ngram_range=(1, 2),
        min_df=2 if len(texts) >= 50 else 1,
        max_features=MAX_FEATURES,
        dtype=np.float32,
    )
    matrix = vectorizer.fit_transform(texts).tocsr()
    per_gear: dict[str, _GearData] = {}
    for gear in gears:
        mine = [s for s in samples if s.gear == gear]
        success = np.array([s.success for s in mine], dtype=np.float64)
        weight = np.array([s.weight for s in mine], dtype=np.float64)
        cost = np.array([s.cost_usd for s in mine], dtype=np.float64)
        per_gear[gear] = _GearData(
            rows=np.array([unique[s.prompt] for s in mine], dtype=np.int64),
            success=success,
            weight=weight,
            cost=cost,
            mean_success=float(np.dot(weight, success) / weight.sum()),
            mean_cost=float(cost.mean()),
        )
    coef = intercept = None
    if kind == "logreg":
        coef = np.zeros((matrix.shape[1], len(gears)), dtype=np.float32)
        intercept = np.zeros(len(gears), dtype=np.float64)
        for j, gear in enumerate(gears):
            data = per_gear[gear]
            rate = min(max(data.mean_success, 1e-3), 1 - 1e-3)
            if len(set(data.success.tolist())) < 2:
                intercept[j] = math.log(rate / (1 - rate))  # one outcome only: its rate
                continue
            model = LogisticRegression(C=LOGREG_C, max_iter=2000)
            model.fit(matrix[data.rows], data.success, sample_weight=data.weight)
            coef[:, j] = model.coef_[0]
            intercept[j] = model.intercept_[0]
    reference = max(per_gear[g].mean_cost for g in gears)
    return LernRouter(
        kind=kind,
        vectorizer=vectorizer,
        gears=gears,
        prompts=matrix,
        per_gear=per_gear,
        coef=coef,
        intercept=intercept,
        reference_cost_usd=reference if reference > 0 else 1.0,
        samples=len(samples),
        trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        skipped_gears=skipped,
        schaltplan=kickdown.learn(
            kickdown.Outcome(
                s.prompt, s.gear, s.answer, s.success if s.weight >= 1 else None, s.cost_usd
            )
            for s in samples
        ),
    )


# --- the trip log and persistence (Django) -------------------------------------------------


def samples_from_log(*, since: datetime | None = None) -> list[Sample]:
    """The finished trips of the log as training samples (see the module's docstring)."""
    from fahrtenbuch.models import Trip, TripStatus

    trips = Trip.objects.filter(
        status__in=(TripStatus.SUCCEEDED, TripStatus.FAILED), gear_name__gt=""
    )
    if since is not None:
        trips = trips.filter(created_at__gte=since)
    samples = []
    for task, gear, status, feedback, cost, output in trips.values_list(
        "task", "gear_name", "status", "feedback", "cost_usd", "output"
    ).iterator():
        if feedback in (1, -1):
            success, weight = float(feedback == 1), 1.0
        elif status == TripStatus.FAILED:
            success, weight = 0.0, 1.0
        else:
            success, weight = 1.0, UNJUDGED_WEIGHT
        samples.append(Sample(task, gear, success, float(cost), weight, output))
    return samples


def default_path() -> Path:
    from django.conf import settings

    return Path(
        getattr(settings, "CLUTCH_LERNROUTER_PATH", "") or settings.DATA_DIR / "lernrouter.joblib"
    )


def save(router: LernRouter, path: Path | None = None) -> Path:
    """Write atomically: a reader never sees half a file."""
    path = path or default_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    joblib.dump(router, partial)
    partial.replace(path)
    return path


_cache: dict[Path, tuple[float, LernRouter | None]] = {}
_cache_lock = threading.Lock()


def load(path: Path | None = None) -> LernRouter | None:
    """The saved router, or None; re-read only when the file changed (cheap per decision)."""
    path = path or default_path()
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    with _cache_lock:
        cached = _cache.get(path)
        if cached and cached[0] == mtime:
            return cached[1]
        try:
            router = joblib.load(path)
        except Exception:  # a damaged file must not stop a decision: the road table drives
            logger.exception("Lernrouter: cannot read %s; deciding without it", path)
            router = None
        if getattr(router, "version", None) != FORMAT_VERSION:
            router = None  # written by another version: wait for the next training
        _cache[path] = (mtime, router)
        return router


def trainieren(*, kind: str = "logreg", path: Path | None = None, training_run=None) -> dict:
    """Train on the trip log and save; returns a report (also stored on ``training_run``)."""
    samples = samples_from_log()
    try:
        router = fit(samples, kind=kind)
    except NotEnoughData as exc:
        report = {"trained": False, "why": str(exc), "samples": len(samples)}
    else:
        save(router, path)
        report = {"trained": True, **router.summary()}
    if training_run is not None:
        training_run.report = {**(training_run.report or {}), "lernrouter": report}
        training_run.save(update_fields=["report"])
    return report
