"""The widgets of the main and detail screens."""
