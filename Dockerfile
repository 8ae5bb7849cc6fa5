# One image for every mmq process (migrate, ingest and search workers); compose picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# The whole tree, installed in place: `mmq db upgrade` finds migrations/ and alembic.ini next to
# the package source, so they must live in /app beside mmq/. torch comes from PyPI; its default
# Linux wheel carries CUDA and also runs on CPU, so GPU and CPU workers share this image.
COPY . /app
RUN pip install -e .

CMD ["mmq", "worker", "--queues", "ingest"]
