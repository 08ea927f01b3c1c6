"""Restart delays: exponential with a cap and jitter (pure)."""

from __future__ import annotations

import random
from dataclasses import dataclass

JITTER = 0.1  # +-10%: restarts of many services that failed together spread out, yet stay predictable


@dataclass(frozen=True)
class Backoff:
    initial: float = 1.0
    factor: float = 2.0
    max: float = 300.0

    def delay(self, attempt: int, rand: random.Random | None = None) -> float:
        """Seconds before restart number ``attempt`` (0 for the first restart after a run)."""
        base = min(self.max, self.initial * self.factor ** min(attempt, 64))
        spread = (rand or random).uniform(-JITTER, JITTER)
        return max(0.0, min(self.max, base * (1 + spread)))
