"""The engine's decision code: plain Python, no ORM. Dataclasses in, a decision out."""
