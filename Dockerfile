# syntax=docker/dockerfile:1
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY idp ./idp
RUN python -m venv /opt/idp \
 && /opt/idp/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/idp/bin/pip install --no-cache-dir .

FROM python:3.11-slim
# Serves plain HTTP on 0.0.0.0:8000 for a TLS-terminating reverse proxy. Set
# IDP_FORWARDED_ALLOW_IPS to that proxy's address or network (as this container sees
# it) so that its X-Forwarded-For and X-Forwarded-Proto are believed; by default no
# forwarded header is (README, Docker). Never a network clients can reach port 8000 from.
RUN useradd --system --uid 10001 --home-dir /var/lib/idp --create-home idp
COPY --from=build /opt/idp /opt/idp
ENV PATH=/opt/idp/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    IDP_ENV=production \
    IDP_HOST=0.0.0.0 \
    IDP_PORT=8000 \
    IDP_KEYS_DIR=/var/lib/idp/keys \
    IDP_DATABASE_URL=sqlite:////var/lib/idp/idp.db
USER idp
WORKDIR /var/lib/idp
VOLUME ["/var/lib/idp"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s \
  CMD python -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"
ENTRYPOINT ["idp"]
CMD ["serve", "--migrate"]
