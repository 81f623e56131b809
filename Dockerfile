# selfcheck: the sidecar image (README.md, Kubernetes).
#
# Both stages start from the same Python base, because the virtual environment built in the
# first stage points at that base's interpreter. Substitute a locally built equivalent with
#   docker build --build-arg PYTHON_IMAGE=local/bookworm-python .
# (the tests do this on machines that cannot pull images).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY selfcheck ./selfcheck
# pip compiles every module to bytecode here, so the read-only runtime never needs to write
# a .pyc; pip and setuptools leave the venv before it is copied, and nothing is cached.
RUN python3 -m venv /opt/selfcheck \
    && /opt/selfcheck/bin/pip install --no-cache-dir --disable-pip-version-check . \
    && /opt/selfcheck/bin/pip uninstall --yes --disable-pip-version-check pip setuptools \
    && /opt/selfcheck/bin/python3 -c "import selfcheck.cli"

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="selfcheck" \
      org.opencontainers.image.description="Proves the Datadog Agent's host access from inside its pod" \
      org.opencontainers.image.licenses="Apache-2.0"
# The public base ships pip, setuptools and wheel for the system Python; the sidecar needs
# none of them, so they go (a base without pip, like Debian's own python3, skips this).
RUN if python3 -m pip --version >/dev/null 2>&1; then \
        python3 -m pip uninstall --yes --no-cache-dir --disable-pip-version-check pip setuptools wheel; \
    fi
COPY --from=build /opt/selfcheck /opt/selfcheck
ENV PATH=/opt/selfcheck/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The Agent image's own non-root identity (dd-agent: UID 100, primary group root), so a bare
# `docker run` sees what a non-root Agent sees. Kubernetes sets runAsUser to match the agent
# container; every file here is root-owned and world-readable, so any UID works, and nothing
# is written at run time, so readOnlyRootFilesystem works too.
USER 100:0
EXPOSE 9750
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["selfcheck", "probe", "live"]
ENTRYPOINT ["selfcheck"]
CMD ["serve"]
