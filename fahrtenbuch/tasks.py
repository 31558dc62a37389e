"""Huey tasks: they take ids, claim atomically and are safe to run twice."""

from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task

from fahrtenbuch import services


@db_task(retries=0, context=False)
def run_trip(trip_id: int) -> None:
    from garage.fahrer import Fahrer

    Fahrer().drive(trip_id)


@db_periodic_task(crontab(minute="*"))
def recover_trips() -> None:
    services.trips_recover(enqueue=run_trip)


@HUEY.on_startup()
def recover_on_startup() -> None:
    # A worker that starts picks up what a dead one left behind, without waiting a minute.
    services.trips_recover(enqueue=run_trip)
