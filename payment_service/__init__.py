"""Payment service: charges and refunds orders through a payment-provider adapter."""
