"""bumble's virtual controllers as device-sim runs them (device_sim/bumble_stack.py): the filter
accept list a scanning phone uses among many devices, the link that hands an advertisement to
the controllers that want it, and a connection attempt that can be cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

import pytest

from device_sim.bumble_stack import ACCEPT_LIST_SIZE, controllers_link, open_device
from device_sim.client.ble import Radio, close_radios

pytestmark = [pytest.mark.requires_tools(modules=("bumble",))]

_links = itertools.count()


@contextlib.asynccontextmanager
async def a_link(count: int) -> AsyncIterator[tuple[str, list[Any]]]:
    """A fresh in-process link with ``count`` advertising devices: (transport, devices)."""
    from bumble.core import AdvertisingData

    transport = f"local:test-stack-{next(_links)}"
    async with contextlib.AsyncExitStack() as stack:
        devices = []
        for i in range(count):
            device = await stack.enter_async_context(open_device(transport, f"dev-{i}"))
            data = AdvertisingData([(AdvertisingData.COMPLETE_LOCAL_NAME, f"dev-{i}".encode())])
            await device.start_advertising(
                advertising_data=bytes(data),
                auto_restart=True,
                advertising_interval_min=50,
                advertising_interval_max=50,
            )
            devices.append(device)
        try:
            yield transport, devices
        finally:
            await close_radios()


def address(device: Any) -> str:
    return str(device.random_address).split("/")[0]


def controller_of(transport: str, name: str) -> Any:
    link = controllers_link(transport.removeprefix("local:"))
    return next(c for c in link.controllers if c.name == name)


async def test_a_filtered_scan_reports_the_listed_advertisers_only() -> None:
    async with a_link(3) as (transport, devices):
        wanted, others = address(devices[0]), {address(d) for d in devices[1:]}
        heard: dict[str, int] = {}
        third = asyncio.Event()

        def seen(found: Any, _adv: Any) -> None:
            heard[found.address] = heard.get(found.address, 0) + 1
            if heard.get(wanted, 0) >= 3:
                third.set()

        radio = Radio(stack="bumble", bumble_transport=transport, only=wanted)
        async with radio.scanning(seen, []):
            phone = controller_of(transport, "phone")
            assert phone.filtering and len(phone.accept_list) == 2  # random and public
            async with asyncio.timeout(10):
                await third.wait()
        # Three of its advertising rounds: each other device advertised in them as well,
        # and none of theirs reached the phone's host.
        assert set(heard) == {wanted}
        assert not phone.le_scan_enable

        everyone = asyncio.Event()
        heard.clear()

        def any_seen(found: Any, _adv: Any) -> None:
            heard[found.address] = 1
            if others | {wanted} <= set(heard):
                everyone.set()

        async with Radio(stack="bumble", bumble_transport=transport).scanning(any_seen, []):
            assert not phone.filtering
            async with asyncio.timeout(10):
                await everyone.wait()


async def test_the_accept_list_keeps_the_specs_rules() -> None:
    from bumble import hci

    async with a_link(1) as (transport, devices):
        radio = Radio(stack="bumble", bumble_transport=transport, only=address(devices[0]))
        async with radio.scanning(lambda *_: None, []):
            from device_sim.client.ble import _central

            phone = await _central(transport)
            add = hci.HCI_LE_Add_Device_To_Filter_Accept_List_Command(
                address_type=1, address=hci.Address("C0:00:00:00:00:01")
            )
            with pytest.raises(hci.HCI_Error) as busy:  # not while a filtered scan uses it
                await phone.send_sync_command(add)
            assert busy.value.error_code == hci.HCI_ErrorCode.COMMAND_DISALLOWED_ERROR
        for i in range(ACCEPT_LIST_SIZE - 2):  # two entries are the device's
            await phone.send_sync_command(
                hci.HCI_LE_Add_Device_To_Filter_Accept_List_Command(
                    address_type=1, address=hci.Address(f"C0:00:00:00:01:{i:02X}")
                )
            )
        with pytest.raises(hci.HCI_Error) as full:
            await phone.send_sync_command(add)
        assert full.value.error_code == hci.HCI_ErrorCode.MEMORY_CAPACITY_EXCEEDED_ERROR
        await phone.send_sync_command(hci.HCI_LE_Clear_Filter_Accept_List_Command())
        assert controller_of(transport, "phone").accept_list == set()


async def test_a_phone_whose_connect_timed_out_connects_again() -> None:
    """bumble's controller ignored a cancelled connection, so the phone's next connect was
    refused for ever; here the cancel ends it as the spec says."""
    from bumble.core import BaseBumbleError
    from bumble.hci import Address

    async with a_link(1) as (transport, devices):
        from device_sim.client.ble import _central

        phone = await _central(transport)
        nobody = Address("C1:02:03:04:05:06", Address.RANDOM_DEVICE_ADDRESS)
        with pytest.raises((BaseBumbleError, TimeoutError)):
            await phone.connect(nobody, timeout=0.3)
        assert controller_of(transport, "phone").pending_le_connection is None
        target = Address(address(devices[0]), Address.RANDOM_DEVICE_ADDRESS)
        async with asyncio.timeout(10):
            connection = await phone.connect(target, timeout=5)
        assert connection.peer_address == target
        await connection.disconnect()
