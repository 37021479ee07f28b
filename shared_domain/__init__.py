"""What the services really share: wire contracts, messaging, outbox/inbox, HTTP and settings."""
