"""The AOC gateway: REST API, SSE, projections of the event stream, web dashboard."""
