# Keyhouse: one image for the issuer and the resource services.
#
#   docker build -t keyhouse .                                   # official python:3.11-slim
#   docker build --network host --build-arg BASE_IMAGE=keyhouse-base:bookworm -t keyhouse .
#
# BASE_IMAGE may be any Debian-like image with python3 and the venv module: the official
# python:*-slim images, or plain Debian with python3 + python3-venv from Debian's packages
# (docker/build-base-image.sh makes one where no registry is reachable). Both stages use the
# same base, so the virtual environment's interpreter path is valid in the final stage.
# No secret is baked in: ISSUER_SECRET_KEY(_FILE), ISSUER_DATABASE_URL and its password file come
# at run time.
ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/keyhouse/venv
ENV PATH=/opt/keyhouse/venv/bin:$PATH
WORKDIR /src

# Dependencies first (their own layer, reused while only the code changes): read them from
# pyproject.toml with the standard library's tomllib (Python >= 3.11).
COPY pyproject.toml ./
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p.get("optional-dependencies", {}).get("postgres", [])))' \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

# Then the project itself (no dependency resolution left to do).
COPY . .
RUN pip install --no-deps . \
    && issuer --help >/dev/null \
    && resource-service --help >/dev/null \
    && webapp --help >/dev/null

# ---------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime
LABEL org.opencontainers.image.title="keyhouse" \
      org.opencontainers.image.description="Keyhouse OAuth token issuer and resource services"

# credentials/, secret/, db-password/, var/: mount points for volumes (compose: `init` writes
# the demo credentials, `keygen` the key-encryption secret and the database password, the
# resource services keep their items in var/); created here so that a named volume mounted on
# them is owned by the keyhouse user: mode 0700, except db-password/ (0755: the PostgreSQL
# server, another uid in another container, reads the password file in it).
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/keyhouse --create-home \
        --shell /usr/sbin/nologin keyhouse \
    && install -d -o keyhouse -g keyhouse -m 0700 /var/lib/keyhouse/credentials \
        /var/lib/keyhouse/secret /var/lib/keyhouse/var \
    && install -d -o keyhouse -g keyhouse -m 0755 /var/lib/keyhouse/db-password

COPY --from=builder /opt/keyhouse/venv /opt/keyhouse/venv
# The compose stack's one-shot `keygen` and the health check (standard library only).
COPY docker/keygen.py docker/healthcheck.py /opt/keyhouse/
ENV PATH=/opt/keyhouse/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HEALTHCHECK_PORT=8000

# Relative paths (the default SQLite file var/issuer.db) land in the keyhouse user's home.
WORKDIR /var/lib/keyhouse
USER keyhouse:keyhouse
EXPOSE 8000

# Whatever the container runs (issuer or resource service), it answers GET /readyz on
# HEALTHCHECK_PORT: 200 when it can serve, 503 with the reason while it cannot (the issuer
# without its database or a signing key, a resource service without usable keys). /healthz
# (the process is alive) is for liveness probes. docker/healthcheck.py: standard library only
# (no curl in the image), run without site packages, cheap enough to run every 2 s.
HEALTHCHECK --interval=5s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python3", "-I", "-S", "/opt/keyhouse/healthcheck.py"]

CMD ["issuer", "serve", "--host", "0.0.0.0", "--port", "8000"]
