"""What a long-lived process (the web server, a worker) does once it has loaded the app."""

import gc


def warm_up() -> None:
    """Import the provider drivers now (llama.cpp's among them: a few hundred milliseconds)
    rather than during the first trip, then freeze everything loaded so far out of the
    garbage collector's reach: the full collections that a swarm's thousands of objects set
    off otherwise walk all of Django, NumPy and scikit-learn each time (tens of milliseconds,
    measured as one slow run in three of bench/swarm.py)."""
    from garage.motorblock import registry

    registry.available_kinds()
    gc.freeze()
