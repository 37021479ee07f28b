"""Inventory service: products, stock, and all-or-nothing reservations per order."""
