"""The widget a site embeds: the footer appeal, the gate (client and server mode), and their routes."""
