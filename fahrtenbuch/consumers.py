"""WebSocket consumers: one per live page. They join the relay's groups and pass on the HTML
fragments it renders; htmx's ws extension swaps them into the page by element id."""

import json

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from fahrtenbuch import live, selectors
from fahrtenbuch.services import ApplicationError

# Close codes in the application range (4000–4999): the browser does not retry on these.
NOT_LOGGED_IN, FORBIDDEN, NOT_FOUND = 4401, 4403, 4404


class LiveConsumer(AsyncWebsocketConsumer):
    topics: list[str]

    async def follow(self, *topics: str) -> None:
        live.relay.ensure_running()
        self.topics = list(topics)
        for topic in topics:
            await self.channel_layer.group_add(live.relay.group(topic), self.channel_name)
            live.relay.watch(topic)

    async def disconnect(self, code) -> None:
        for topic in getattr(self, "topics", []):
            live.relay.unwatch(topic)
            await self.channel_layer.group_discard(live.relay.group(topic), self.channel_name)

    def viewer(self):
        user = self.scope.get("user")
        return user if user is not None and user.is_authenticated else None


class CockpitConsumer(LiveConsumer):
    """The cockpit: fuel gauge, Tacho, gearbox and running trips, re-sent when they change."""

    async def connect(self) -> None:
        user = self.viewer()
        if user is None:
            await self.close(code=NOT_LOGGED_IN)
            return
        await self.accept()
        await self.follow("cockpit", f"cockpit-{live.cockpit_scope(user)}")
        # Joined first, then the snapshot: whatever changes after it arrives from the relay.
        await self.send(text_data=await database_sync_to_async(live.render_cockpit_snapshot)(user))

    async def cockpit_fragment(self, message: dict) -> None:
        await self.send(text_data=message["html"])


class TripConsumer(LiveConsumer):
    """One trip. The page first says which event it rendered last ({"after": id}); the
    consumer replays what came after it, then passes on the relay's batches, each event once."""

    async def connect(self) -> None:
        user = self.viewer()
        if user is None:
            await self.close(code=NOT_LOGGED_IN)
            return
        self.trip_id = int(self.scope["url_route"]["kwargs"]["trip_id"])
        try:
            await database_sync_to_async(selectors.trip_for)(user, self.trip_id)
        except ApplicationError as error:
            await self.close(code=FORBIDDEN if error.status == 403 else NOT_FOUND)
            return
        self.after: int | None = None
        self.seen: set[int] = set()
        self.waiting: list[dict] = []  # batches that arrive before the page said where it is
        await self.accept()
        await self.follow(f"trip-{self.trip_id}")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.after is not None:
            return
        try:
            after = int(json.loads(text_data or "{}").get("after") or 0)
        except (TypeError, ValueError, AttributeError):
            after = 0
        self.after = max(after, 0)
        replay = await database_sync_to_async(live.render_trip_replay)(self.trip_id, self.after)
        if replay:
            await self.deliver(replay)
        waiting, self.waiting = self.waiting, []
        for batch in waiting:
            await self.deliver(batch)

    async def trip_batch(self, message: dict) -> None:
        if self.after is None:
            self.waiting.append(message)
            return
        await self.deliver(message)

    async def deliver(self, batch: dict) -> None:
        fresh = {pk for pk in batch["ids"] if pk > self.after and pk not in self.seen}
        if not fresh:
            return
        self.seen |= fresh
        parts = [html for pk, html in batch["appends"] if pk in fresh]
        if batch["refresh"]:
            parts.append(batch["refresh"])
        parts.append(live.cursor_fragment(self.trip_id, max(self.seen)))
        await self.send(text_data="".join(parts))
