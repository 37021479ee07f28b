"""A shipping address for sample orders (tests, benchmark, docs)."""

ADDRESS = {
    "street": "1 Main St",
    "city": "Springfield",
    "state": "IL",
    "zip_code": "62701",
    "country": "US",
}
