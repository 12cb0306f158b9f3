"""Console messages of the extension: one prefix, and messages said once per process."""
from __future__ import annotations

LOG_PREFIX = "InitEdit:"
_said: set[str] = set()


def say_once(text: str) -> None:
    """Print ``text`` once per process (a note that would otherwise repeat on every generation)."""
    if text not in _said:
        _said.add(text)
        print(f"{LOG_PREFIX} {text}")
