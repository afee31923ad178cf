"""Appeal experiments: which words raise the most money, and one ask budget across page and mail.

- ``definition``: the ``[appeal.experiments.<name>]`` and ``[appeal.goal]`` tables, checked at start.
- ``assignment``: which variant (or ``holdback``) a browser or reader sees, a stable hash.
- ``asks``: the compact HMAC-signed "ask" the appeal answer hands the widget, which the widget sends
  back with its impression, click and close events; and the keyed hash that stands for a subject in
  stored events (no reader id, no browser id is stored with an event).

Data flow: the access check assigns (trace, appeal flag) -> GET /support/appeal answers the variant's
copy and an ask -> the widget reports what was seen/clicked/closed (POST /support/events, recorded in
``appeal_events``; footer impressions also spend the reader's ask budget in ``appeal_asks``) ->
Checkout carries ``appeal_experiment``/``appeal_variant``/``appeal_channel`` in its metadata -> the
webhook sync stores them on checkout sessions, subscriptions and payments -> the results report joins
daily counts (``appeal_daily``) with attributed payments.
"""
