import numpy as np
import pytest

from gateway.streams import StreamNameError, StreamRegistry, split_stream_name


def test_register_interns_names_with_metadata() -> None:
    reg = StreamRegistry()
    a = reg.register("dma-07/inlet/flow_lps", unit="L/s", kind="flow")
    b = reg.register("dma-07/pz-3/pressure_m", unit="m", kind="pressure")
    assert (a, b) == (0, 1)
    assert reg.register("dma-07/inlet/flow_lps", unit="L/s") == a
    info = reg.info(a)
    assert (info.asset, info.quantity, info.unit) == ("dma-07/inlet", "flow_lps", "L/s")
    assert reg.names_of(np.array([1, 0, 1], np.int32)).tolist() == [
        "dma-07/pz-3/pressure_m",
        "dma-07/inlet/flow_lps",
        "dma-07/pz-3/pressure_m",
    ]
    assert "dma-07/inlet/flow_lps" in reg and len(reg) == 2


def test_conflicting_unit_is_refused() -> None:
    reg = StreamRegistry()
    reg.register("bus/MH12-KQ-4321/coolant_c", unit="degC")
    with pytest.raises(ValueError, match="one unit"):
        reg.register("bus/MH12-KQ-4321/coolant_c", unit="degF")


@pytest.mark.parametrize("bad", ["flow", "/x/y", "dma 07/flow", "dma-07/", "a//b"])
def test_bad_names_are_refused(bad: str) -> None:
    with pytest.raises(StreamNameError, match="<asset>/<quantity>"):
        split_stream_name(bad)


def test_vehicles_have_their_own_ids() -> None:
    reg = StreamRegistry()
    assert reg.vehicles.intern("MH12-KQ-4321") == 0
    assert reg.vehicles.intern("MH12-KQ-0001") == 1
    assert reg.vehicles.intern("MH12-KQ-4321") == 0
    assert len(reg) == 0
