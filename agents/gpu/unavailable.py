"""The source used when there is no GPU data: it says why, and never pretends to see a GPU."""

from __future__ import annotations

from agents.gpu.base import GpuPoll, unavailable_label


class UnavailableGpuSource:
    """A GpuSource with no GPUs; its label is ``"unavailable: <reason>"``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason.strip() or "unknown reason"
        self._poll = GpuPoll(unavailable_label(self.reason))

    def poll(self) -> GpuPoll:
        """Always the same empty poll carrying the reason."""
        return self._poll

    def pids_on_gpus(self) -> set[int]:
        """No GPU is visible, so no PID is known to hold GPU memory."""
        return set()

    def close(self) -> None:
        """Nothing to release."""
