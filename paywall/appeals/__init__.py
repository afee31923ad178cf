"""Appeals by mail: campaigns as files, segments, the send-once ledger, one-click unsubscribe."""
