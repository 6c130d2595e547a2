"""The deploy flow: validation, idempotency, attempt records, and the flow that turns a
request into a CreateOS project."""
