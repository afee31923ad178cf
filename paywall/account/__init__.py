"""The reader's account page (/account): subscription, billing portal, donations, appeal mail, data, erasure."""
