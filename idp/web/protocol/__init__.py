"""Endpoints of the OpenID Connect protocol: for programs (token, userinfo, ...) and the
browser-facing protocol steps (authorize, end session)."""
