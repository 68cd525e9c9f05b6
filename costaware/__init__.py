"""costaware."""
