"""The HTTP search service (``modalign serve``) and its web page.

Importing this package is cheap: FastAPI and uvicorn are imported when an app is created or served.
"""

from modalign.serving.app import create_app
from modalign.serving.batcher import MicroBatcher
from modalign.serving.settings import ServeSettings

__all__ = ["MicroBatcher", "ServeSettings", "create_app"]
