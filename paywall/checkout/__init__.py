"""Reader flows: plans, Stripe Checkout and portal sessions, and the reader pages."""
