"""Access: may this reader read this article? Rules, meter, comps, appeal dismissals, tokens."""
