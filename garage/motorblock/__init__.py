"""MotorBlock: the one call layer for all providers (one module per provider)."""
