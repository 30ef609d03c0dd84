"""Self-service pages of a signed-in citizen under /account."""
