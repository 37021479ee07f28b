"""Tools to run the whole stack locally and to drive it from the end-to-end tests."""
