"""Reader flows: plans, Stripe Checkout and portal sessions, the reader pages and the appeal widget."""
