"""`supervisor console`: a read-only web page over an instance (server.py), its pages (pages.py)."""
