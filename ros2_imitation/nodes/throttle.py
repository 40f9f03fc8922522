"""Throttled problem reports, ROS-free: a flood of one fault is summarised, and cannot hide another."""
from typing import Optional


class ReasonLog:
    """Throttles problem reports: each kind of problem is logged at once, then at most once per
    period, with a count of the reports it held back."""

    def __init__(self, period: float = 2.0):
        self.period = float(period)
        self._last = {}          # kind -> (time logged, suppressed since)

    def should_log(self, reason: str, now: float, kind: Optional[str] = None) -> Optional[str]:
        """The line to log now, or None to stay quiet. `kind` groups reasons (default: the text)."""
        kind = reason if kind is None else kind
        last = self._last.get(kind)
        if last is None or now - last[0] >= self.period or now < last[0]:
            self._last[kind] = (now, 0)
            suppressed = last[1] if last else 0
            return f'{reason} ({suppressed} more since the last report)' if suppressed else reason
        self._last[kind] = (last[0], last[1] + 1)
        return None

    def clear(self):
        self._last.clear()
