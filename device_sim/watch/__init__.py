"""Watching onboarding: the daemon's read-only watch listener (Server-Sent Events)."""
