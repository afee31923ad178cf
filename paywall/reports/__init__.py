"""Finance reports: revenue, subscriptions, payments and donors, as JSON, CSV, XLSX and a page.

Each report is one function taking a Session (``revenue.revenue_report`` and friends); the HTTP
views and the ``paywall report`` commands both call it, then an exporter writes the rows.
"""
