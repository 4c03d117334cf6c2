# One image for the Dask scheduler, the Dask workers and the pipeline job.
#
#   docker build -t ncp-subsidence:0.1.0 .
#   docker run --rm ncp-subsidence:0.1.0 run --config /etc/ncp/config.yaml    # entrypoint: ncp-subsidence
#   docker run --rm --entrypoint dask ncp-subsidence:0.1.0 scheduler          # the scheduler
#   docker run --rm --entrypoint dask ncp-subsidence:0.1.0 worker tcp://scheduler:8786
#
# Kubernetes pods set `command: [dask, scheduler]` / `[dask, worker]` (see deploy/kubernetes/).
# Every Python dependency is pinned by deploy/requirements-image.txt (python deploy/lock_image.py).
# tests/test_deploy.py lints this file with hadolint and runs, from the built wheel in a fresh
# virtual environment, the three commands this image runs.

FROM python:3.11.13-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# --- build the wheel -------------------------------------------------------------------------
FROM base AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ncp_subsidence ./ncp_subsidence
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
    && printf '%s[cloud,cluster,viz]\n' /wheels/ncp_subsidence-*.whl > /wheels/requirements.txt

# --- the runtime image -----------------------------------------------------------------------
FROM base
ENV OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    VECLIB_MAXIMUM_THREADS=1 \
    NUMEXPR_NUM_THREADS=1
COPY deploy/requirements-image.txt /tmp/constraints.txt
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --constraint /tmp/constraints.txt --requirement /wheels/requirements.txt \
    && rm -rf /wheels /tmp/constraints.txt \
    && groupadd --system --gid 1000 ncp \
    && useradd --system --uid 1000 --gid 1000 --create-home --home-dir /home/ncp ncp

USER 1000:1000
WORKDIR /home/ncp
# 8786 scheduler, 8787 scheduler dashboard, 8788 worker dashboard
EXPOSE 8786 8787 8788
ENTRYPOINT ["ncp-subsidence"]
CMD ["--help"]
