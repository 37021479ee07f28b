"""Order service: the public API where orders are placed and followed."""
