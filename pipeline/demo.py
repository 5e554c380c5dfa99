"""The bundled demo: a few outlets' feeds (RSS 2.0, Atom, RDF), served on loopback.

The feeds are written for this project. They carry one wire story syndicated
by three outlets (one exact copy, one edited copy), a repeated entry, an
undated entry, tracking parameters, relative links, markup to sanitize, and
one entry that must be quarantined (a `javascript:` link).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import PACKAGE_DIR
from pipeline.feedserver import CONTENT_TYPES, FeedServer, Route

DEMO_DIR = PACKAGE_DIR / "demo_feeds"
DEFAULT_DEMO_PORT = 8765


def demo_routes(directory: Path = DEMO_DIR) -> dict[str, Route]:
    return {
        f"/{path.name}": Route(path.read_bytes(), CONTENT_TYPES.get(path.suffix, "application/xml"))
        for path in sorted(directory.iterdir())
        if path.suffix in CONTENT_TYPES
    }


def serve_demo(port: int = DEFAULT_DEMO_PORT) -> FeedServer:
    """Start serving the demo feeds on 127.0.0.1:`port` (0 picks a free port)."""
    return FeedServer(demo_routes(), port=port).start()


def demo_feed_list(server: FeedServer) -> str:
    return "".join(server.url(path) + "\n" for path in sorted(server.routes))
