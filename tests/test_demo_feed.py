"""The demo's fault table and clocks: which alert catches which injected fault, and how
times read on the wall clock and on a simulated one."""

from __future__ import annotations

import io

from gateway.bundle import Bundle
from gateway.demo_feed import AlertPrinter, Clock, FaultTable, Injected
from gateway.events import Alert, Severity

S = 1_000_000_000
T0 = 1_764_873_000 * S  # 2025-12-04 18:30:00 UTC, 00:00 IST on the 5th
WALL = Clock.wall("Asia/Kolkata")
NET = Clock.simulated(600, "Asia/Kolkata")


def test_times_are_local_and_say_their_clock() -> None:
    assert WALL.show(T0) == "Fri 00:00:00 IST wall"
    assert NET.show(T0 + 90 * S) == "Fri 00:01:30 IST sim 600x"
    assert WALL.span(19 * S) == "19.0 s"
    assert NET.span(201 * 60 * S) == "3 h 21 min sim (20.1 s real)"
    assert NET.span(5 * 60 * S) == "5 min sim (0.5 s real)"


def test_the_first_matching_alert_after_the_injection_catches_a_fault() -> None:
    leak = Injected("leak 3 L/s", "dma-01", ("leak",), T0, NET)
    panic = Injected("panic", "bus/MH12-PM-0002", ("panic",), T0, WALL)
    table = FaultTable([leak])
    table.add([panic])
    table.see(Alert("leak", "dma-01", Severity.WARNING, T0 - S))  # before it: not this fault
    table.see(Alert("leak", "dma-02", Severity.WARNING, T0 + S))  # another DMA
    table.see(Alert("burst", "dma-01", Severity.WARNING, T0 + S))  # another kind
    caught = Alert("leak", "dma-01", Severity.WARNING, T0 + 3600 * S)
    table.see(caught)
    table.see(Alert("leak", "dma-01", Severity.WARNING, T0 + 7200 * S))  # later: the first stays
    assert table.caught == {0: caught}
    assert table.missed() == [panic]
    rows = table.rows()
    assert rows[0] == (
        "leak 3 L/s on dma-01", "Fri 00:00:00 IST sim 600x", "leak dma-01",
        "Fri 01:00:00 IST sim 600x", "1 h 0 min sim (6.0 s real)",
    )  # fmt: skip
    assert rows[1] == ("panic on bus/MH12-PM-0002", "Fri 00:00:00 IST wall", "missed", "-", "-")
    assert "missed" in table.render().splitlines()[2]


def test_the_printer_puts_each_alert_on_its_assets_clock_and_fills_the_table() -> None:
    out = io.StringIO()
    panic = Injected("panic", "bus/MH12-PM-0002", ("panic",), T0, WALL)
    table = FaultTable([panic])
    printer = AlertPrinter(out, table, network=NET, wall=WALL, dmas={"dma-01"})
    opened = Alert("panic", "bus/MH12-PM-0002", Severity.CRITICAL, T0 + 2 * S)
    leak = Alert("leak", "dma-01", Severity.WARNING, T0)
    printer.process(Bundle(alerts=(opened, leak)))
    printer.process(Bundle(alerts=(opened.clear(T0 + 9 * S),)))
    learned = Alert("burst", "dma-01", Severity.WARNING, T0 - 3600 * S)  # opened in the history
    printer.process(Bundle(alerts=(learned.clear(T0),)))
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert "Fri 00:00:02 IST wall" in lines[0] and "panic" in lines[0]
    assert "Fri 00:00:00 IST sim 600x" in lines[1] and "leak" in lines[1]
    assert "cleared" in lines[2] and "Fri 00:00:09 IST wall" in lines[2]
    assert table.caught == {0: opened}
