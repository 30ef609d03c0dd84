"""OpenID Connect protocol: discovery, endpoints, grants, interaction policy."""
