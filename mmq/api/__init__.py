"""The HTTP API (`mmq serve`): a producer over the Client with API keys, media uploads and
the search page. It loads no torch: docs/api.md."""
