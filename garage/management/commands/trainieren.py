import json as jsonlib

from django.core.management.base import BaseCommand

from garage.fahrer import Fahrer


class Command(BaseCommand):
    help = "Train the Fahrschule on the trip log: write the routing policy and decay ε."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, **options) -> None:
        report = Fahrer().trainieren()
        if options["json"]:
            self.stdout.write(jsonlib.dumps(report, ensure_ascii=False))
            return
        self.stdout.write(
            f"Training run {report['training_run']}: {report['trips_considered']} trips, "
            f"{report['policies_changed']} policies changed, ε {report['epsilon_before']:.4f} → "
            f"{report['epsilon_after']:.4f}"
        )
        for road, decision in report["policy"].items():
            if "gear" in decision:
                self.stdout.write(
                    f"  {road}: {decision['gear']} @ {decision['throttle']:.2f} "
                    f"(fitness {decision['fitness']:.3f}, {decision['samples']} trips)"
                )
            else:
                self.stdout.write(f"  {road}: road table ({decision['why']})")
