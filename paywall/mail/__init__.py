"""Mail: SMTP transport, message building, the supporter-mail outbox, and yearly receipts."""
