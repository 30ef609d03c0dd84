"""Signing keys: the on-disk store, rotation, JWKS and JWT signing."""
