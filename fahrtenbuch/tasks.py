"""Huey tasks: they take ids, claim atomically and are safe to run twice."""

import threading

from huey import crontab
from huey.contrib.djhuey import HUEY, db_periodic_task, db_task

from fahrtenbuch import services


@db_task(retries=0, context=False)
def run_trip(trip_id: int) -> None:
    from garage.fahrer import Fahrer

    Fahrer().drive(trip_id, reload=False)


@db_periodic_task(crontab(minute="*"))
def recover_trips() -> None:
    services.trips_recover(enqueue=run_trip)


_recovered_at_start = threading.Lock()


@HUEY.on_startup()
def recover_on_startup() -> None:
    # A consumer that starts picks up what a dead one left behind, without waiting a minute.
    # Every worker thread runs startup hooks; one recovery per process is enough.
    if _recovered_at_start.acquire(blocking=False):
        from clutch_site.startup import warm_up

        warm_up()
        services.trips_recover(enqueue=run_trip)
