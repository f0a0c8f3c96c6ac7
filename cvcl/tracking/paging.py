"""Every run of an MLflow search, page after page.

``MlflowClient.search_runs`` returns one page (``max_results`` runs, at most 50,000 by MLflow's
own limit) and the token of the next; a single call with a large ``max_results`` silently drops
whatever lies past it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mlflow.entities import Run

PAGE_SIZE = 1000  # MLflow's default page: small enough for a server's answer, few round trips


class RunSearcher(Protocol):
    """The part of ``MlflowClient`` that :func:`all_runs` uses."""

    def search_runs(
        self,
        experiment_ids: list[str],
        filter_string: str = ...,
        run_view_type: int = ...,
        max_results: int = ...,
        order_by: list[str] | None = ...,
        page_token: str | None = ...,
    ) -> Any: ...


def all_runs(
    client: RunSearcher,
    experiment_ids: Sequence[str],
    filter_string: str = "",
    order_by: Sequence[str] | None = None,
    page_size: int = PAGE_SIZE,
) -> list[Run]:
    """All runs of ``experiment_ids`` matching ``filter_string`` (active ones, as MLflow's
    default), in ``order_by`` order. Each page is one call through
    :func:`cvcl.tracking.store.with_retries` (a read: repeating it is safe), so a server away
    for a moment costs a wait, not the listing."""
    from cvcl.tracking.store import with_retries

    if page_size < 1:
        raise ValueError(f"page_size={page_size}: expected at least 1")

    def page(token: str | None) -> Any:
        return client.search_runs(
            list(experiment_ids),
            filter_string,
            max_results=page_size,
            order_by=list(order_by) if order_by else None,
            page_token=token,
        )

    runs: list[Run] = []
    token: str | None = None
    seen: set[str] = set()
    while True:
        found = with_retries(partial(page, token))
        runs.extend(found)
        token = getattr(found, "token", None)
        if not token:
            return runs
        if token in seen:  # a store that hands the same token back would loop for ever
            raise RuntimeError(f"MLflow's search_runs returned page token {token!r} twice; the listing stops")
        seen.add(token)
