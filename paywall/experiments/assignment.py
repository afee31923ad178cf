"""Which arm of an experiment a browser or reader is in: a stable hash, no state, no query.

``bucket`` is SHA-256 of the experiment's name and the subject key (a site reader id, or
``" anon:" + browser id``), read as a number in [0, 1). The first ``holdback`` of that range is the
holdback; the rest is split between the variants by weight, in the order the configuration lists
them. The same subject lands in the same arm on every page, every worker and every restart, and a
subject's arm in one experiment says nothing about its arm in another (the name is in the hash).

Unkeyed on purpose: a key rotation must not reshuffle a running experiment. Nothing secret follows
from an arm (the access answer says it anyway).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from paywall.config import Settings
from paywall.experiments.definition import HOLDBACK, Experiment
from paywall.widget.settings import appeal_settings

_SCALE = float(1 << 64)


@dataclass(frozen=True)
class Assignment:
    """A subject's arm: ``variant`` is a variant's name or ``holdback``."""

    experiment: Experiment
    variant: str

    @property
    def holdback(self) -> bool:
        return self.variant == HOLDBACK


def bucket(experiment: str, subject: str) -> float:
    """The subject's place in [0, 1) for this experiment."""
    digest = hashlib.sha256(f"{experiment}\x00{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign(experiment: Experiment, subject: str) -> Assignment:
    """The subject's arm in ``experiment`` (whether or not it is running)."""
    point = bucket(experiment.name, subject)
    if point < experiment.holdback:
        return Assignment(experiment, HOLDBACK)
    # Spread the rest of [0, 1) over the variants by weight.
    point = (point - experiment.holdback) / (1 - experiment.holdback)
    total = sum(v.weight for v in experiment.variants)
    edge = 0.0
    for variant in experiment.variants:
        edge += variant.weight / total
        if point < edge:
            return Assignment(experiment, variant.name)
    return Assignment(experiment, experiment.variants[-1].name)  # float rounding at the very top


def running(settings: Settings, channel: str, now: dt.datetime) -> Experiment | None:
    """The experiment running on ``channel`` at ``now`` (at most one: the configuration checks it)."""
    for experiment in appeal_settings(settings).experiments.values():
        if channel in experiment.channels and experiment.running(now):
            return experiment
    return None


def assignment_for(settings: Settings, channel: str, subject: str, now: dt.datetime) -> Assignment | None:
    """The subject's arm in the experiment running on ``channel`` now, or None when none runs."""
    experiment = running(settings, channel, now)
    return None if experiment is None else assign(experiment, subject)
