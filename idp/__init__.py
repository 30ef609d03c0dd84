"""idp: a citizen identity service and OpenID Connect provider."""

import sys

# httpx's package imports its command line when rich and pygments are installed (5.6 MiB
# in every worker process); idp never runs it, so httpx finds it missing and skips it.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
