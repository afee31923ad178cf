"""After the rules: may this appeal be an ask? The ask budget, ``min_articles``, the footer experiment.

``apply_asks`` is a pure post-step of ``decide`` (paywall/access/rules.py): ``decide`` says whether
the reader is someone to ask at all (not a supporter, not paused by a donation, not dismissed);
this says whether to ask now, and with which words. It runs only on an appeal the rules showed,
and adds one trace line per check it makes, in this order:

1. ``ask_budget`` (only while ``[appeal] max_asks`` > 0): the subject's asks (footer appeals seen,
   appeal mails sent: ``appeal_asks``) in the last ``per_days`` days; at ``max_asks`` or more the
   appeal is hidden.
2. ``min_articles`` (only while ``[appeal] min_articles`` > 0): articles read this meter month,
   counting the one this answer reads; below ``min_articles`` the appeal is hidden.
3. ``experiment`` (only while an experiment runs on the ``footer`` channel): the subject's arm
   (paywall/experiments/assignment.py). A variant shows its copy; ``holdback`` sees no appeal.

The experiment comes last on purpose: only a subject who would have been asked is assigned, so
the holdback's views (its denominator for the lift) count the same readers the variants' do.
"""

from __future__ import annotations

import dataclasses

from paywall.access.facts import Decision, ReaderState, Step
from paywall.experiments.assignment import Assignment
from paywall.widget.settings import AppealSettings


def articles_read(state: ReaderState, decision: Decision) -> int:
    """Articles this subject has read this meter month, the one this answer spends included."""
    return len(state.meter_articles) + (1 if decision.records_read else 0)


def _hide(decision: Decision, steps: list[Step]) -> Decision:
    return dataclasses.replace(decision, appeal=False, trace=(*decision.trace, *steps))


def apply_asks(
    decision: Decision, state: ReaderState, appeal: AppealSettings, assignment: Assignment | None
) -> Decision:
    """``decision`` with the ask budget, ``min_articles`` and the footer arm applied (see the module).

    ``assignment`` is the subject's arm in the footer experiment running now (None: none runs).
    Pure; a decision whose appeal is already false comes back unchanged.
    """
    if not decision.appeal:
        return decision
    steps: list[Step] = []
    if appeal.max_asks > 0:
        window = f"in the last {appeal.per_days} days"
        if state.asks >= appeal.max_asks:
            why = f"hidden: {state.asks} asks {window} reach max_asks {appeal.max_asks}"
            return _hide(decision, [*steps, Step("ask_budget", False, why)])
        steps.append(Step("ask_budget", True, f"{state.asks} of {appeal.max_asks} asks {window}"))
    if appeal.min_articles > 0:
        read = articles_read(state, decision)
        if read < appeal.min_articles:
            why = f"hidden: {read} articles read this month, asks start at {appeal.min_articles}"
            return _hide(decision, [*steps, Step("min_articles", False, why)])
        why = f"{read} articles read this month (asks start at {appeal.min_articles})"
        steps.append(Step("min_articles", True, why))
    if assignment is not None:
        name = assignment.experiment.name
        if assignment.holdback:
            steps.append(Step("experiment", False, f"holdback of {name} sees no appeal"))
            return dataclasses.replace(_hide(decision, steps), experiment=name, variant=assignment.variant)
        steps.append(Step("experiment", True, f"{name}: variant {assignment.variant}"))
        return dataclasses.replace(
            decision, trace=(*decision.trace, *steps), experiment=name, variant=assignment.variant
        )
    return dataclasses.replace(decision, trace=(*decision.trace, *steps)) if steps else decision
