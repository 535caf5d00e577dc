"""Tests of device_sim.security."""
