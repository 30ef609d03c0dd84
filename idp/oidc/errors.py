"""Protocol errors, one class per spec error code, rendered in one place (idp/web/protocol.py).

authlib's own error classes are re-exported under their spec names; the codes
authlib lacks (RFC 6750, OpenID Connect Unmet Authentication Requirements 1.0)
are defined here the same way. Each carries
``error`` and ``error_description``; ``redirect_uri`` is set only once the
client and its redirect URI are validated, which is what decides between
redirecting to the client and showing an error page.
"""

from __future__ import annotations

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749.errors import (
    AccessDeniedError as AccessDenied,
)
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError as InvalidClient,
)
from authlib.oauth2.rfc6749.errors import (
    InvalidGrantError as InvalidGrant,
)
from authlib.oauth2.rfc6749.errors import (
    InvalidRequestError as InvalidRequest,
)
from authlib.oauth2.rfc6749.errors import (
    InvalidScopeError as InvalidScope,
)
from authlib.oauth2.rfc6749.errors import (
    UnauthorizedClientError as UnauthorizedClient,
)
from authlib.oauth2.rfc6749.errors import (
    UnsupportedGrantTypeError as UnsupportedGrantType,
)
from authlib.oauth2.rfc6749.errors import (
    UnsupportedResponseTypeError as UnsupportedResponseType,
)
from authlib.oidc.core.errors import (
    ConsentRequiredError as ConsentRequired,
)
from authlib.oidc.core.errors import (
    InteractionRequiredError as InteractionRequired,
)
from authlib.oidc.core.errors import (
    LoginRequiredError as LoginRequired,
)
from authlib.oidc.core.errors import (
    RequestNotSupportedError as RequestNotSupported,
)
from authlib.oidc.core.errors import (
    RequestURINotSupportedError as RequestUriNotSupported,
)

__all__ = [
    "AccessDenied",
    "ConsentRequired",
    "InteractionRequired",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidToken",
    "LoginRequired",
    "OAuth2Error",
    "RequestNotSupported",
    "RequestUriNotSupported",
    "ServerError",
    "UnauthorizedClient",
    "UnmetAuthenticationRequirements",
    "UnsupportedGrantType",
    "UnsupportedResponseType",
]


class UnmetAuthenticationRequirements(OAuth2Error):
    """The session cannot reach the requested acr (OIDC Unmet Authentication Requirements)."""

    error = "unmet_authentication_requirements"


class InvalidToken(OAuth2Error):
    """The bearer token is missing, expired, revoked or malformed (RFC 6750 3.1)."""

    error = "invalid_token"
    status_code = 401


class ServerError(OAuth2Error):
    """The server cannot complete a valid request (a configuration problem)."""

    error = "server_error"
    status_code = 500
