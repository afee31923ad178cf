"""Readers: the site registers them, the sync links payments to them, admins erase them."""
