"""The local trace viewer (``lunatrace ui``): a read-only web page over the store."""

from lunatrace.ui.server import ViewerServer, make_server

__all__ = ["ViewerServer", "make_server"]
