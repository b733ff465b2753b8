"""The web app over the run service: `create_app`, served by `agentic-loop serve`."""

from agentic_loop.faces.web.app import create_app

__all__ = ["create_app"]
