# One image for every mmq process (migrate, ingest and search workers); compose picks the
# command. Two variants from this one file, chosen with a build argument:
#   docker build --build-arg TORCH_VARIANT=cuda -t mmq:cuda .   # GPU ingest (the default)
#   docker build --build-arg TORCH_VARIANT=cpu  -t mmq:cpu .    # search, migrate, CPU ingest
# The CPU variant carries no CUDA libraries: PyPI's Linux torch wheel is the CUDA build and
# pulls several GB of nvidia-* packages, so the cpu variant takes the same torch and
# torchvision versions from PyTorch's CPU-only index (`2.14.1+cpu` satisfies `==2.14.1`).
FROM python:3.11-slim-bookworm

ARG TORCH_VARIANT=cuda
# The Makefile's TORCH, exactly (tests/test_compose.py checks that they agree).
ARG TORCH="torch==2.14.1 torchvision==0.29.1"
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

# HF_HOME holds model weights (compose mounts the hf-cache volume there) and MMQ_STATE_DIR
# the label-vector caches; both belong to the mmq user, and a fresh named volume takes the
# owner of the folder it covers, so the workers can write there without root.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/var/cache/mmq/huggingface \
    MMQ_STATE_DIR=/var/lib/mmq

RUN groupadd --system --gid 10001 mmq \
    && useradd --system --uid 10001 --gid mmq --home-dir /home/mmq --create-home \
       --shell /usr/sbin/nologin mmq \
    && mkdir -p "$HF_HOME" "$MMQ_STATE_DIR" \
    && chown -R mmq:mmq /var/cache/mmq "$MMQ_STATE_DIR"

WORKDIR /app

# Dependencies first, in their own layers: editing the code does not reinstall torch.
# Deterministic: every package at the version the tests ran with (deploy/lock.py wrote the
# files from that venv), installed with --no-deps so that nothing is resolved at build time,
# then `pip check` proves the set complete. torch's own CUDA pins come from its metadata and
# are frozen in requirements-cuda.txt.
COPY deploy/requirements.txt deploy/requirements-cuda.txt /tmp/deploy/
RUN pip install --no-deps -r /tmp/deploy/requirements.txt
RUN case "$TORCH_VARIANT" in \
      cuda) pip install --no-deps -r /tmp/deploy/requirements-cuda.txt $TORCH ;; \
      cpu) pip install --no-deps --index-url "$TORCH_CPU_INDEX" $TORCH ;; \
      *) echo "TORCH_VARIANT must be cuda or cpu, not '$TORCH_VARIANT'" >&2; exit 1 ;; \
    esac

# The whole tree, installed in place with the worker extra (torch, transformers, the bundled
# models: pinned above; a producer alone needs only `pip install mmq`). Owned by root: the mmq
# user reads the code and cannot change it.
COPY . /app
RUN pip install --no-deps --no-build-isolation -e ".[worker]" && pip check

USER mmq
CMD ["mmq", "worker", "--queues", "ingest"]
