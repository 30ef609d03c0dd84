"""idp: a citizen identity service and OpenID Connect provider."""
