"""TCP (RFC 9293): the sans-IO connection, its parts, and the layer that feeds it segments."""
