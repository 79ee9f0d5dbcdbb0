"""Training and evaluation of the ml layer's models (``malwaresnipper train`` / ``eval``).

Kept out of the scan path: nothing here is imported by the engine while it scans.
"""
