# One image for the scheduler, the workers and the scheduled job: `ncp-subsidence` is the
# entrypoint; `dask scheduler` / `dask worker` run with --entrypoint dask.
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    MKL_NUM_THREADS=1

RUN groupadd --gid 1000 ncp && useradd --uid 1000 --gid ncp --create-home ncp

WORKDIR /opt/ncp_subsidence
COPY pyproject.toml README.md ./
COPY ncp_subsidence ./ncp_subsidence
RUN pip install --no-cache-dir ".[cloud,cluster,viz]"

USER ncp
WORKDIR /home/ncp
ENTRYPOINT ["ncp-subsidence"]
CMD ["--help"]
