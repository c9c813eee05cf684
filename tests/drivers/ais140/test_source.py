"""Ais140Source over real TCP (and UDP) on loopback: framing, acks, limits, bad input."""

from __future__ import annotations

import asyncio
import dataclasses
import time

from firmware_sim.ais140 import encoder
from tests.drivers.ais140.units import IMEIS, fix, running, until


async def test_frames_by_the_grammar_not_by_reads() -> None:
    async with running() as run:
        _, writer = await run.connect()
        a, b, c, d = (encoder.location(s, fix(0, n)) for n, s in enumerate(encoder.SHAPES))
        writer.write(a + b"\r\n" + b + c)  # three in one segment, '\r\n' and nothing between
        await writer.drain()
        for part in (b"\r\n" + d[:10], d[10:50], d[50:] + b"\n"):  # one over three segments
            await asyncio.sleep(0.02)
            writer.write(part)
            await writer.drain()
        await until(lambda: run.source.stats.packets == 4)
        await until(lambda: run.fixes() == 4)
        assert not run.rejects()
        assert run.source.stats.profiles == {"roadrpa": 1, "teltonika": 1, "ctpl": 1, "xyz123": 1}
        names = {
            str(n) for b in run.bundles for n in run.source.registry.names_of(b.readings.stream)
        }
        assert "bus/MH12-PM-0001/main_v" in names
        writer.close()


async def test_history_is_stored_apart_and_an_emergency_goes_out_at_once() -> None:
    async with running(flush_ms=600_000) as run:  # only the emergency can cause a flush
        _, writer = await run.connect()
        writer.write(encoder.location("roadrpa", fix(0, 1, live=False)) + b"\r\n")
        writer.write(encoder.location("roadrpa", fix(0, 2, panic=True)) + b"\r\n")
        await writer.drain()
        await until(lambda: len(run.bundles) == 2)
        live, hist = run.bundles
        assert live.live and not hist.live
        assert len(hist.fixes) == 1 and len(live.fixes) == 1
        (panic,) = live.events
        assert panic.kind == "panic" and panic.asset == "bus/MH12-PM-0001" and panic.data["live"]
        writer.close()


async def test_logins_and_heartbeats_are_acknowledged_where_the_profile_says() -> None:
    async with running() as run:
        reader, writer = await run.connect()
        # MARK sends its login with no terminator and waits for the reply
        writer.write(f"$,LGN,MARK,000000000,{IMEIS[1]},V0.0.1,AIS140,18.5,N,73.8,E,*".encode())
        await writer.drain()
        ack = await asyncio.wait_for(reader.readline(), 10)
        assert ack.startswith(b"$LGN") and ack.endswith(b"*\r\n") and len(ack) == 4 + 14 + 3
        writer.write(f"$,HBT,MARK,{IMEIS[1]}*\r\n".encode())
        assert await asyncio.wait_for(reader.readline(), 10) == b"$HBT*\r\n"
        writer.write(encoder.login("xyz123", IMEIS[2], "MH12PM0003") + b"\r\n")
        assert await asyncio.wait_for(reader.readline(), 10) == b"$,1,*\r\n"
        writer.write(encoder.heartbeat("roadrpa", IMEIS[1]) + b"\r\n")  # no ack for ROADRPA
        await until(lambda: run.source.stats.packets == 4)
        assert run.source.stats.acks == 3
        await until(lambda: run.events().count("login") == 2)
        writer.close()


async def test_each_bad_input_has_a_reason_and_a_count() -> None:
    good = encoder.location("roadrpa", fix(3, 1))
    body, crc = encoder.location("teltonika", fix(3, 2)).rsplit(b"*", 1)
    # Teltonika's XOR is known but the packet is kept on a mismatch: counted, not lost
    wrong_crc = body + b"*" + f"{int(crc, 16) ^ 0xFF:02X}".encode()
    gwsim = encoder.fixed_location("gwsim", {"header": "NRM", "vendor_id": "GWSIM"})
    bad_crc16 = gwsim[:-4] + b"0000"  # a fixed layout with the checksum wrong: refused
    stranger = encoder.location("roadrpa", dataclasses.replace(fix(0, 3), imei="111111111111111"))
    async with running(max_frame_bytes=512) as run:
        _, writer = await run.connect()
        writer.write(b"$NRM," + b"A" * 600 + b"\r\n")  # oversized: whole in one segment
        writer.write(b"\x00\xff\x13garbage\xfe")  # binary noise
        writer.write(b"$NRM," + b"B" * 700)  # a frame with no end (in sight)
        await writer.drain()
        await until(lambda: run.source.stats.rejects["no_end"] == 1)
        writer.write(b"B" * 300 + b"$" + good[1:] + b"\r\n" + bytes(wrong_crc) + b"\r\n")
        writer.write(bad_crc16 + b"\r\n" + stranger + b"\r\n")
        await writer.drain()
        await until(lambda: sum(run.source.stats.rejects.values()) == 5)
        stats = run.source.stats
        assert stats.rejects == {
            "oversized": 1,
            "noise": 1,
            "no_end": 1,
            "bad_checksum": 1,
            "unknown_imei": 1,
        }
        assert stats.checksums == {"ok": 1, "mismatch": 1}
        await until(lambda: len(run.rejects()) == 5)
        assert sorted(run.rejects()) == sorted(stats.rejects)
        assert run.fixes() == 2 and stats.disconnects == {}
        writer.close()


async def test_a_unit_sending_only_garbage_is_disconnected_others_go_on() -> None:
    async with running(max_bad_frames=5) as run:
        bad_reader, bad = await run.connect()
        _, good = await run.connect()
        bad.write(b"$JUNK,1,2,3\r\n" * 5)
        await bad.drain()
        assert await asyncio.wait_for(bad_reader.read(), 10) == b""  # closed by the gateway
        good.write(encoder.location("ctpl", fix(4, 1)) + b"\r\n")
        await good.drain()
        await until(lambda: run.source.stats.packets == 1)
        assert run.source.stats.disconnects == {"garbage": 1}
        assert run.source.stats.rejects == {"unknown_header": 5}
        good.close()


class FrozenClock:
    """Time that does not pass: the rate limits never refill."""

    def __call__(self) -> float:
        return 1000.0


async def test_a_flood_is_rate_limited_but_never_an_emergency() -> None:
    async with running(
        clock=FrozenClock(), max_packets_per_s=2.0, burst_s=2.0, max_bad_frames=5
    ) as run:
        flood_reader, flood = await run.connect()
        _, calm = await run.connect()
        packets = [encoder.location("roadrpa", fix(5, n)) + b"\r\n" for n in range(1, 5)]
        packets.append(encoder.location("roadrpa", fix(5, 5, panic=True)) + b"\r\n")
        packets += [encoder.location("roadrpa", fix(5, n)) + b"\r\n" for n in range(6, 20)]
        flood.write(b"".join(packets))
        await flood.drain()
        assert await asyncio.wait_for(flood_reader.read(), 10) == b""
        calm.write(encoder.location("roadrpa", fix(6, 1)) + b"\r\n")
        await calm.drain()
        await until(lambda: run.source.stats.packets == 6)  # 4 in the burst, the panic, calm
        stats = run.source.stats
        assert stats.rejects == {"rate_limited": 5} and stats.disconnects == {"flood": 1}
        await until(lambda: "panic" in run.events())
        calm.close()


async def test_a_half_open_connection_is_closed_when_idle() -> None:
    async with running(idle_timeout_s=0.5, frame_linger_s=0.1) as run:
        reader, writer = await run.connect()
        writer.write(encoder.location("roadrpa", fix(7, 1))[:40])  # then nothing, ever
        await writer.drain()
        _, other = await run.connect()
        other.write(encoder.location("teltonika", fix(6, 1)) + b"\r\n")  # meanwhile
        await other.drain()
        await until(lambda: run.source.stats.packets == 1)
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert set(run.source.stats.disconnects) == {"idle"}  # the other goes quiet too
        assert run.source.stats.rejects == {"no_position": 1}  # the half packet, read at linger
        writer.close()
        other.close()


async def test_connections_beyond_the_maximum_are_closed() -> None:
    async with running(max_connections=2) as run:
        held = [await run.connect() for _ in range(2)]
        await until(lambda: run.source.stats.connections == 2)
        reader, writer = await run.connect()
        assert await asyncio.wait_for(reader.read(), 10) == b""
        assert run.source.stats.disconnects == {"max_connections": 1}
        for _, w in (*held, (reader, writer)):
            w.close()


async def test_a_reading_over_the_byte_rate_pauses_and_loses_nothing() -> None:
    async with running(max_bytes_per_s=2000.0, max_packets_per_s=1000.0, burst_s=0.1) as run:
        _, writer = await run.connect()
        writer.write(b"".join(encoder.location("ctpl", fix(2, n)) + b"\r\n" for n in range(3)))
        await writer.drain()
        await until(lambda: run.source.stats.packets == 3)
        assert run.source.stats.throttled >= 1 and not run.source.stats.rejects
        writer.close()


class _Udp(asyncio.DatagramProtocol):
    pass


async def test_udp_datagrams() -> None:
    async with running(udp_port=0) as run:
        assert run.source.udp_address is not None
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            _Udp, remote_addr=("127.0.0.1", run.source.udp_address[1])
        )
        pair = encoder.location("teltonika", fix(1, 1)) + encoder.location("ctpl", fix(1, 2))
        transport.sendto(pair)
        await until(lambda: run.source.stats.packets == 2)
        assert run.source.stats.datagrams == 1
        transport.close()


async def test_a_busy_loop_never_takes_a_pause_in_a_packet_for_its_end() -> None:
    async with running(frame_linger_s=0.05) as run:
        _, writer = await run.connect()
        packet = encoder.location("roadrpa", fix(1, 1))
        writer.write(packet[:60])
        await writer.drain()
        await until(lambda: run.source.stats.accepted == 1)
        await asyncio.sleep(0.02)  # the first half is in, and the linger timer armed
        writer.write(packet[60:] + b"\r\n")  # into the socket at once
        time.sleep(0.3)  # the loop is busy past the linger while the rest waits
        await until(lambda: run.source.stats.packets == 1)
        assert not run.source.stats.rejects
        writer.close()
