"""Pages a citizen meets while signing in: login, registration, password reset, step-up,
consent."""
