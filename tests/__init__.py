"""mmq's tests. Helpers they share live in tests/support/."""
