"""The values a probe produces, as upstream names them.

``Outcome`` is what one run of a probe handler reports (pkg/probe: success, warning, failure,
unknown); ``Result`` is what a probe worker records for a container (pkg/kubelet/prober/results:
Unknown, Success, Failure), after thresholds. A ``Warning`` outcome counts as success and is
reported with a "ProbeWarning" event.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass


class Outcome(str, enum.Enum):
    """pkg/probe.Result: the outcome of one probe run (the string appears in event messages)."""

    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"
    UNKNOWN = "unknown"

    def __str__(self) -> str:
        return self.value


class Result(str, enum.Enum):
    """pkg/kubelet/prober/results.Result: the recorded state of a probe for one container."""

    UNKNOWN = "Unknown"
    SUCCESS = "Success"
    FAILURE = "Failure"

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class ProbeRun:
    """One run of a probe handler: its outcome and the output the events quote."""

    outcome: Outcome
    output: str = ""


class ProbeError(Exception):
    """The probe could not be run at all (bad port name, no handler, runtime error): upstream's
    "errored" case. The result is thrown away and the probe retried at the next period."""
