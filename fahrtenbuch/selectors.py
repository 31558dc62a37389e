"""Permission-scoped reads of the trip log: members see their own trips, admins all."""

from django.db.models import QuerySet

from fahrtenbuch.models import Trip
from fahrtenbuch.services import ApplicationError


def trips_visible_to(user) -> QuerySet[Trip]:
    trips = Trip.objects.select_related("user")
    return trips if user.is_staff else trips.filter(user=user)


def trip_for(user, trip_id: int) -> Trip:
    """The trip if ``user`` may see it; 404 when it does not exist, 403 when it is someone else's."""
    trip = Trip.objects.select_related("user").filter(pk=trip_id).first()
    if trip is None:
        raise ApplicationError(f"Trip {trip_id} does not exist.", status=404)
    if not user.is_staff and trip.user_id != user.pk:
        raise ApplicationError(f"Trip {trip_id} belongs to someone else.", status=403)
    return trip


def trip_page(
    user,
    *,
    status: str | None = None,
    road: str | None = None,
    gear: str | None = None,
    owner: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> tuple[list[Trip], int | None]:
    """Newest first, keyset-paginated by id: (trips, the ``before`` for the next page or None)."""
    trips = trips_visible_to(user)
    if status:
        trips = trips.filter(status=status)
    if road:
        trips = trips.filter(road=road)
    if gear:
        trips = trips.filter(gear_name=gear)
    if owner:
        trips = trips.filter(user__username=owner)
    if before:
        trips = trips.filter(pk__lt=before)
    page = list(trips.order_by("-id")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return page, (page[-1].pk if more and page else None)
