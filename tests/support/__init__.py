"""What the tests share besides fixtures (those are in tests/conftest.py): Stripe events and a stand-in
for Stripe's API (stripe_events, stripe_fake), rows made directly (access_rows, billing_rows, and the
readers and payments in mail), an SMTP server (mail), fault injection (faults) and the demo site
(widget_demo)."""
