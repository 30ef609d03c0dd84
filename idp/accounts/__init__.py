"""Citizen accounts: registration, credentials, sessions, recovery."""
