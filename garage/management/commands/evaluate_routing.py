import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from fahrtenbuch.models import Trip
from garage import lernrouter, routing_eval, routing_report
from garage import routerbench as rb

ISOLATED_MARK = "CLUTCH_EVALUATION_DB"


def _in_evaluation_database() -> bool:
    """True in the child this command started: its database is the temporary one it named."""
    db = settings.DATABASES["default"]
    mark = os.environ.get(ISOLATED_MARK)
    return bool(mark) and db["ENGINE"].endswith("sqlite3") and str(db["NAME"]) == mark


class Command(BaseCommand):
    help = (
        "Evaluate routing on recorded outcomes (RouterBench format) through the real engine, "
        "with k-fold cross-validation or --train/--test. Runs in a temporary database of its "
        "own: the team's trip log is never touched."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--data", type=Path, help="Directory (or file) of RouterBench CSVs.")
        parser.add_argument("--train", type=Path, help="Train on this directory …")
        parser.add_argument("--test", type=Path, help="… and route this one.")
        parser.add_argument("--folds", type=int, default=5)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--kind", choices=lernrouter.KINDS, default="logreg")
        parser.add_argument(
            "--lambda",
            dest="lam",
            type=float,
            help="Willingness-to-pay λ of the engine run (default: the green zone's).",
        )
        parser.add_argument(
            "--curve-trips",
            type=int,
            help="Trips of the ε-greedy learning curve (default: every prompt once; 0: none).",
        )
        parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
        parser.add_argument("--plot", type=Path, help="Draw the cost–accuracy plane to this PNG.")
        parser.add_argument(
            "--in-place",
            action="store_true",
            help="Run in the configured database instead of a temporary one "
            "(it writes gears, roads and trips; refused if the database has trips).",
        )
        parser.add_argument(
            "--force", action="store_true", help="With --in-place: run even if trips exist."
        )

    def handle(self, *args, **opts) -> None:
        if bool(opts["train"]) != bool(opts["test"]):
            raise CommandError("Give both --train DIR and --test DIR, or --data DIR.")
        if not opts["data"] and not opts["train"]:
            raise CommandError("Give --data DIR (cross-validation) or --train DIR --test DIR.")
        if opts["data"] and opts["train"]:
            raise CommandError("Give either --data or --train/--test, not both.")
        isolated = _in_evaluation_database()
        if not (opts["in_place"] or isolated):
            self._run_isolated(opts)
            return
        if Trip.objects.exists() and not opts["force"] and not isolated:
            raise CommandError(
                "This database has trips; an evaluation would add gears, roads and trips to it. "
                "Run without --in-place (a temporary database), or add --force."
            )
        try:
            table = rb.load(opts["data"] or opts["train"])
            test = rb.load(opts["test"]) if opts["test"] else None
            report = routing_eval.evaluate(
                table,
                test=test,
                options=routing_eval.EvalOptions(
                    kind=opts["kind"],
                    folds=opts["folds"],
                    seed=opts["seed"],
                    lam=opts["lam"],
                    curve_trips=opts["curve_trips"],
                ),
                progress=lambda text: self.stderr.write(text),
            )
        except (rb.TableError, routing_eval.EvaluationError, ValueError) as exc:
            raise CommandError(str(exc)) from None
        if opts["plot"]:
            routing_report.plot(report, opts["plot"])
        if opts["json"]:
            self.stdout.write(json.dumps(report, ensure_ascii=False))
        else:
            self._print(report)

    def _run_isolated(self, opts) -> None:
        """The same command in a child process whose database, data directory and queue are
        temporary files, so it cannot reach the configured database at all."""
        with tempfile.TemporaryDirectory(prefix="clutch-evaluate-") as tmp:
            env = {
                **os.environ,
                "CLUTCH_DATA_DIR": tmp,
                "CLUTCH_SQLITE_PATH": str(Path(tmp) / "evaluation.sqlite3"),
                "CLUTCH_HUEY_PATH": str(Path(tmp) / "huey.sqlite3"),
                "CLUTCH_DATABASE_URL": "",
                "CLUTCH_REDIS_URL": "",
                "CLUTCH_PRUEFSTAND": "1",
                "CLUTCH_LOG_LEVEL": "WARNING",
                ISOLATED_MARK: str(Path(tmp) / "evaluation.sqlite3"),
            }
            manage = Path(settings.BASE_DIR) / "manage.py"
            # Our own interpreter and manage.py with arguments this command built.
            migrate = subprocess.run(  # noqa: S603
                [sys.executable, str(manage), "migrate", "--verbosity", "0"],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if migrate.returncode:
                raise CommandError(f"Could not set up the evaluation database:\n{migrate.stderr}")
            argv = [sys.executable, str(manage), "evaluate_routing", *self._argv(opts)]
            child = subprocess.run(  # noqa: S603
                argv, env=env, stdout=subprocess.PIPE, text=True, check=False
            )
            self.stdout.write(child.stdout, ending="")
            if child.returncode:
                raise CommandError("The evaluation failed (see above).")

    @staticmethod
    def _argv(opts) -> list[str]:
        argv = []
        for key in ("data", "train", "test", "plot"):
            if opts[key]:
                argv += [f"--{key}", str(Path(opts[key]).resolve())]
        argv += ["--folds", str(opts["folds"]), "--seed", str(opts["seed"]), "--kind", opts["kind"]]
        if opts["lam"] is not None:
            argv += ["--lambda", str(opts["lam"])]
        if opts["curve_trips"] is not None:
            argv += ["--curve-trips", str(opts["curve_trips"])]
        if opts["json"]:
            argv.append("--json")
        return argv

    def _print(self, report: dict) -> None:
        w = self.stdout.write
        setup, router = report["setup"], report["router"]
        w(
            f"{report['data']['prompts']} prompts from {', '.join(report['data']['sources'])}; "
            f"{setup['mode']} ({setup['folds']} folds, seed {setup['seed']}), "
            f"Lernrouter {setup['kind']}, λ {setup['lambda']:g}; {setup['seconds']} s"
        )
        w(f"{'':44} {'accuracy':>9} {'USD/query':>11} {'AIQ':>7}")

        def line(name: str, p: dict, aiq: float | None = None) -> None:
            a = f"{aiq:7.4f}" if aiq is not None else " " * 7
            w(f"{name[:44]:44} {p['accuracy'] * 100:8.2f}% {p['mean_cost_usd']:11.6f} {a}")

        line("clutch engine + Lernrouter", router, router["aiq"])
        kd = router["kickdown"]
        w(
            f"  kickdown on {kd['trips']} of {router['prompts']} prompts, "
            f"{kd['escalated']} of them driven to the top gear"
        )
        for name, candidate in report["candidates"].items():
            w(f"  Lernrouter {name} over λ: AIQ {candidate['aiq']:.4f}")
        line("random router at equal cost", report["random"], report["random"]["aiq"])
        line("random router, uniform", report["random"]["uniform"])
        line("oracle", report["oracle"])
        for name, p in sorted(report["models"].items(), key=lambda kv: kv[1]["mean_cost_usd"]):
            line(f"{name} (G{p['tier']})", p, p["aiq"])
        t = report["targets"]
        w(
            f"vs {t['best_model']}: {t['accuracy_gap_points']:+.2f} points at "
            f"{t['cost_share_of_best'] * 100:.1f} % of its cost; within 1 point at ≤ half cost: "
            f"{'yes' if t['within_1_point_at_half_cost'] else 'no'}"
        )
        curve = report.get("learning_curve")
        if curve:
            w(f"learning curve (ε-greedy, blocks of {curve['block']} trips):")
            for b in curve["blocks"]:
                w(
                    f"  {b['trips']:5} trips  ε {b['epsilon']:.3f}  router {'on ' if b['router'] else 'off'}"
                    f"  accuracy {b['accuracy'] * 100:5.1f}%  cost {b['mean_cost_usd']:.6f}  "
                    f"explored {b['explored']}"
                )
