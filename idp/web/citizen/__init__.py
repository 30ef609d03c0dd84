"""Pages a citizen meets while signing in: login, registration, password reset, step-up,
consent."""

from idp.web.citizen import consent, login, registration, reset, step_up

ROUTES = [*registration.ROUTES, *login.ROUTES, *reset.ROUTES, *step_up.ROUTES, *consent.ROUTES]
