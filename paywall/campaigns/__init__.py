"""Mail campaigns by segment: campaigns as files, who gets one, the send-once ledger, one-click
unsubscribe."""
