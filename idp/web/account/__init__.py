"""Self-service pages of a signed-in citizen under /account."""

from idp.web.account import apps, confirm, home, security

ROUTES = [*home.ROUTES, *security.ROUTES, *confirm.ROUTES, *apps.ROUTES]
