"""The session layer: the one interface doors talk to (secure sessions, who holds the device,
request dispatch, the radio hand-off and door settings)."""
