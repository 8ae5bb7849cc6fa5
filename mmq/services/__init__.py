"""Plain functions over an encoder and a database session: what the Celery tasks call."""

from mmq.services.ingest import ingest
from mmq.services.search import search

__all__ = ["ingest", "search"]
