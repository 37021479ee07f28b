"""The saga orchestrator: drives each order through payment, inventory, shipping and
notification, and compensates in reverse when a step fails."""
