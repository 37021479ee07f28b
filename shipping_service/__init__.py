"""Shipping service: books a shipment with a carrier for each order."""
