"""The device core: the onboarding engine (the only owner of state), events, store, records."""
