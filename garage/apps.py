from django.apps import AppConfig


class GarageConfig(AppConfig):
    name = "garage"
    verbose_name = "Garage (providers, gears, roads, budget)"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from fahrtenbuch.models import RoutingPolicy, TrainingRun
        from garage.getriebe import forget_tables
        from garage.models import FitnessCriteria, Gear, Provider, Road

        # Not business rules: only this process's cache of the tables is dropped.
        for model in (Gear, Provider, Road, FitnessCriteria, RoutingPolicy, TrainingRun):
            post_save.connect(forget_tables, sender=model, dispatch_uid=f"forget-{model.__name__}")
            post_delete.connect(
                forget_tables, sender=model, dispatch_uid=f"forget-del-{model.__name__}"
            )
