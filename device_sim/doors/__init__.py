"""Doors: the hosts (``ble/``: a GATT host interface and its bless implementation;
``softap/``: the access point and its HTTP listeners), the personalities they present (one
folder each: ``native/``, ``improv/``, ``esp/``), their registry and the door supervisor."""

from .base import Door

__all__ = ["Door"]
