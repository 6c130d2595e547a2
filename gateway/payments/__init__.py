"""Money in: the quote and the credits decision, which receipt logs count, the payment
service, and the re-check of payments credited before finality."""
