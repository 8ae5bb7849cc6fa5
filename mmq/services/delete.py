"""Delete: items by external id, item id or metadata filter, or a whole collection, and
the media-store files no item references any more. No model: database work only."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from mmq.media.store import MediaStore
from mmq.schemas import DeleteRequest, DeleteResult
from mmq.store import deletes, repository

log = logging.getLogger(__name__)


def delete(*, session: Session, request: DeleteRequest, media: MediaStore) -> DeleteResult:
    """Delete what the request names, in one transaction: a search that starts after it
    returned finds none of it. An id the collection does not hold is listed in `missing`
    (the others are deleted); an unknown collection is NotFound. Then the media-store
    files of the deleted items that no item of any collection references are removed;
    files outside the media store are never touched."""
    collection = repository.get_collection(session=session, name=request.collection)
    collection_id = collection.id
    prefix = media.uri_prefix
    if request.all:
        gone = deletes.delete_collection(session=session, collection=collection, uri_prefix=prefix)
    else:
        gone = deletes.delete_items(
            session=session,
            collection=collection,
            external_ids=request.external_ids,
            item_ids=request.item_ids,
            filter=request.filter,
            uri_prefix=prefix,
        )
    session.commit()
    if request.all:
        deletes.drop_indexes(engine=session.get_bind().engine, collection_id=collection_id)
    release_media(session=session, media=media, uris=gone.uris)
    found = {str(i) for i in gone.found}
    asked = request.external_ids or [str(i) for i in request.item_ids]
    missing = [i for i in dict.fromkeys(asked) if i not in found]
    return DeleteResult(collection=request.collection, deleted=gone.count, missing=missing)


def release_media(*, session: Session, media: MediaStore, uris: Sequence[str]) -> list[Path]:
    """Remove the files of the media store among `uris` that no item references now; the
    files removed. A uri outside the store (symlinks and `..` resolved) is left alone."""
    inside = [uri for uri in uris if media.contains(Path(uri))]
    still_used = deletes.referenced_uris(session=session, uris=inside)
    session.commit()
    removed = []
    for uri in inside:
        if uri in still_used:
            continue
        path = Path(uri).resolve()
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # the items are deleted either way: a file left is harmless
            log.warning("could not remove %s from the media store: %s", path, exc)
            continue
        removed.append(path)
    return removed
