"""The parser beyond the golden corpus: generic fallback, checksums, profiles, emergencies."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zlib
from pathlib import Path

import pytest

from firmware_sim.ais140 import encoder
from gateway.drivers.ais140 import Ais140Parser, Heartbeat, Location, Login, PacketError
from gateway.drivers.ais140.checksums import crc16, crc32, xor8
from gateway.drivers.ais140.profiles import load_profiles

PARSER = Ais140Parser()
AT = dt.datetime(2026, 11, 28, 1, 45, 1, tzinfo=dt.UTC)
FIX = encoder.Fix("861234567890123", "MH12KQ4321", AT, 18.52043, 73.856743, 32.5, 120.0, 42)


def test_checksum_check_values() -> None:
    assert crc16(b"123456789") == "29B1"  # CRC-16/CCITT-FALSE
    assert crc32(b"123456789") == "CBF43926"
    assert xor8(b"\x01\x02\x04") == "07"


def test_an_unknown_vendor_still_gives_a_position_flagged_generic() -> None:
    roadrpa = encoder.location("roadrpa", FIX).replace(b"ROADRPA", b"NEWVENDOR")
    packet = PARSER.parse(roadrpa)
    assert isinstance(packet, Location) and packet.profile == "generic"
    assert (packet.lat, packet.lon, packet.imei) == (18.52043, 73.856743, FIX.imei)
    assert packet.ts_ns == int(AT.timestamp()) * 10**9 and packet.checksum == "unverified"
    assert (packet.speed_kmh, packet.heading, packet.frame_number) == (32.5, 120.0, None)


def test_a_known_algorithm_verifies_and_a_mismatch_is_kept_and_flagged() -> None:
    good = encoder.location("roadrpa", FIX)
    assert PARSER.parse(good).checksum == "ok"
    crc = good.rsplit(b",", 1)[1]
    bad = good[: -len(crc)] + f"{int(crc, 16) ^ 1:08X}".encode()
    kept = PARSER.parse(bad)
    assert isinstance(kept, Location) and kept.checksum == "mismatch" and kept.lat == FIX.lat


def test_a_fixed_layout_refuses_a_wrong_checksum() -> None:
    packet = encoder.fixed_location("gwsim", {"header": "NRM", "vendor_id": "GWSIM"})
    with pytest.raises(PacketError) as err:
        PARSER.parse(packet[:-4] + b"0000")
    assert err.value.reason == "bad_checksum"


def test_history_and_emergencies() -> None:
    hist = PARSER.parse(encoder.location("teltonika", dataclasses.replace(FIX, live=False)))
    assert isinstance(hist, Location) and not hist.live and hist.alert_kind is None
    panic = PARSER.parse(encoder.location("ctpl", dataclasses.replace(FIX, panic=True)))
    assert isinstance(panic, Location) and panic.type == "emergency"
    assert panic.alert_kind == "panic" and panic.profile == "emergency" and panic.checksum == "ok"
    sem = f"$,EPB,SEM,{FIX.imei},SP,28112026014501,A,18.5,N,73.8,E,560.0,0.0,0.0,G,MH12,+91,*"
    stop = PARSER.parse(sem.encode())
    assert isinstance(stop, Location) and stop.alert_kind == "panic_cleared" and not stop.live
    tamper = PARSER.parse(encoder.location("xyz123", FIX).replace(b",NR,01,", b",TA,16,"))
    assert isinstance(tamper, Location) and tamper.alert_kind == "tamper"


def test_a_unit_without_time_or_fix_gives_no_position_to_draw() -> None:
    packet = PARSER.parse(
        b"$,03,XYZ123,0.0.1,TA,16,L,861359034137271,MH12AB1234,0,00,00,0000,00,00,00,"
        b"000.000000,N,000.000000,E,000.0,000.00,00,000.0,00.00,00.00,IDEAIN,1,1,00.0,4.0,1,O,"
        b"16,404,22,2797,11b7,0000,01,000032,8173e058,"
    )
    assert isinstance(packet, Location) and packet.ts_ns is None and not packet.has_position


def test_logins_and_health_by_shape() -> None:
    login = PARSER.parse(encoder.login("roadrpa", FIX.imei, FIX.reg))
    assert isinstance(login, Login) and login.imei == FIX.imei and login.lat == 18.52043
    health = PARSER.parse(encoder.heartbeat("ctpl", FIX.imei))
    assert isinstance(health, Heartbeat) and health.kind == "health"
    assert (health.battery_pct, health.checksum) == (88.0, "ok")
    beat = PARSER.parse(f"$HBT,{FIX.imei}*".encode())
    assert isinstance(beat, Heartbeat) and beat.profile == "generic" and beat.imei == FIX.imei


def test_firmware_specific_tail() -> None:
    text = encoder.location("roadrpa", FIX).decode().replace("1.7AIS", "3.5AIS")
    body = text.rsplit(",", 2)[0] + ",0,0,001926,8252.226,"
    packet = PARSER.parse((body + f"{zlib.crc32(body.encode()):08X}").encode())
    assert isinstance(packet, Location) and packet.checksum == "ok"
    assert (packet.frame_number, packet.odometer_km) == (1926, 8252.226)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[profiles.a]\nvendors = []\ncolour = "red"\n', "unknown keys ['colour']"),
        ('[profiles.a]\nvendors = []\nlayout = "anchored"\n[profiles.b]\nvendors = []\n'
         'layout = "anchored"\n', "exactly one profile"),
        ('[profiles.a]\nvendors = []\nlocation_headers = ["NRM"]\n', "must name the frame_number"),
        ('[profiles.a]\nvendors = []\nlayout = "anchored"\n[profiles.b]\nvendors = ["X"]\n'
         'layout = "anchored"\n[profiles.c]\nvendors = ["X"]\nlayout = "anchored"\n',
         "vendor id 'X' is in profiles b and c"),
        ('[profiles.a]\nvendors = []\nlayout = "anchored"\nchecksum = "md5"\n', "checksum must"),
        ('[profiles.generic]\nvendors = []\n', "built-in fallback"),
    ],
)  # fmt: skip
def test_bad_profile_files_name_the_fix(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "profiles.toml"
    path.write_text(toml)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")) as err:
        load_profiles(path)
    assert str(path) in str(err.value)


def _xor_body(text: str) -> str:
    return f"{text}*{xor8(text[1:].encode())}"


def test_nmea_coordinates_stored_packets_and_a_generic_checksum_that_holds() -> None:
    text = (
        "$PVT,NEWCO,1.5.8,NR,1,S,861234567890123,MH12AB1234,1,11082026,143000,"
        "1845.1234,N,07312.5678,E,060.5,180.00,08,123.4,01.2,00.9,AIRTEL,1,1,12.0,4.1,0,C,"
        "18,404,20,00D6,CFBD,15,00D6,CFBD,14,00D5,CFBC,12,00D4,CFBB,10,00D3,CFBA,1010,00,"
        "000042,0.00,0.00,00123.4,(),()"
    )
    packet = PARSER.parse(_xor_body(text).encode())
    assert isinstance(packet, Location) and packet.profile == "generic"
    assert packet.lat == pytest.approx(18 + 45.1234 / 60) and not packet.live
    assert packet.lon == pytest.approx(73 + 12.5678 / 60) and packet.checksum == "ok"
    wrong = PARSER.parse((_xor_body(text)[:-2] + "00").encode())
    assert wrong.checksum == "unverified"  # with the algorithm unknown, no verdict
    with pytest.raises(PacketError) as err:
        PARSER.parse(text.replace("1845.1234", "1875.1234").encode())
    assert err.value.reason == "bad_position"  # 75 minutes


def test_a_standard_login_with_another_checksum_is_read_by_shape() -> None:
    login = PARSER.parse(
        b"$LGN,MH12AB1234,861100064831908,1.ONTC,018.520430,N,073.856743,E,C27326CF*"
    )
    assert isinstance(login, Login) and login.profile == "generic"
    assert (login.imei, login.vehicle_reg, login.lat) == ("861100064831908", "MH12AB1234", 18.52043)


def test_the_emergency_format_takes_any_vendors_checksum() -> None:
    text = "$EPB,EMR,861234567890123,NM,11082026143000,A,18.52,N,73.85,E,560.0,20.0,0.0,G,MH12,98"
    packet = PARSER.parse(_xor_body(text).encode())
    assert isinstance(packet, Location) and packet.profile == "emergency"
    assert packet.checksum == "ok" and packet.alert_kind == "panic"


def test_an_unlisted_vendors_checksum_is_not_refused_a_listed_ones_is() -> None:
    values = {"header": "NRM", "vendor_id": "ACME", "packet_type": "NR", "alert_id": "06",
              "packet_status": "L", "imei": FIX.imei, "vehicle_reg": "MH12", "gps_fix": "1",
              "date": "28112026", "time": "014501", "lat": "18.5", "lat_dir": "N",
              "lon": "73.8", "lon_dir": "E", "speed_kmh": "1", "heading": "1", "sats": "1",
              "ignition": "1", "main_power": "1", "main_v": "1", "battery_v": "1",
              "emergency": "0", "tamper": "C", "gsm_signal": "1", "frame_number": "1"}  # fmt: skip
    good = encoder.fixed_location("arai", values)
    assert PARSER.parse(good).profile == "arai"
    other = PARSER.parse(good[:-2] + b"00")
    assert isinstance(other, Location) and (other.profile, other.checksum) == (
        "generic",
        "unverified",
    )
    assert other.alert_kind is None  # NR: a normal packet, whatever the alert id beside it
    sim = encoder.fixed_location("gwsim", {**values, "vendor_id": "GWSIM"})
    with pytest.raises(PacketError) as err:
        PARSER.parse(sim[:-4] + b"0000")
    assert err.value.reason == "bad_checksum"


def test_a_profile_can_say_its_units_send_local_time(tmp_path: Path) -> None:
    path = tmp_path / "profiles.toml"
    text = (Path(__file__).parents[3] / "gateway/drivers/ais140/profiles.toml").read_text()
    path.write_text(
        text.replace('vendors = ["CTPL"]', 'vendors = ["CTPL"]\nutc_offset_minutes = 330')
    )
    ist = Ais140Parser(load_profiles(path)).parse(encoder.location("ctpl", FIX))
    utc = PARSER.parse(encoder.location("ctpl", FIX))
    assert isinstance(ist, Location) and isinstance(utc, Location)
    assert ist.ts_ns is not None and utc.ts_ns is not None
    assert utc.ts_ns - ist.ts_ns == 330 * 60 * 10**9
