"""Stripe objects -> rows: one upsert per object type, guarded so the newest state wins.

Each upsert is ``upsert_<object>(session, obj, source)``: it takes a Session and a ``Source`` and
never commits. The inbox (webhooks and replay) and ``paywall stripe sync`` call them inside
``derived.settled``; /thanks calls ``derived.settle`` after them. Modules, from the bottom up:

- ``fields``: strict readers of payload values (an absurd value raises ``InvalidField``).
- ``ordering``: the ordering rule and ``Source``: which state a row keeps, whatever the order.
- ``rows``: the transaction's cache of rows by Stripe id, the reader a field names, erasure.
- ``notices``: mail the sync queues (receipts, trial ending, payment failed).
- ``derived``: facts recomputed from the rows after every change; ``settled``.
- one module per Stripe object: ``prices``, ``customers``, ``subscriptions``, ``invoices``,
  ``payments`` (charges, payment intents, balance transactions), ``refunds``, ``disputes``,
  ``checkout_sessions``.
"""
