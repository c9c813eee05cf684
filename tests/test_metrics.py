import asyncio

from gateway.metrics import Measurement, render, serve_metrics


class Part:
    def __init__(self) -> None:
        self.polls = 0

    def measurements(self) -> list[Measurement]:
        return [
            Measurement("polls_total", self.polls, "polls made", "counter", (("device", "m1"),)),
            Measurement("line_utilisation", 0.25, "share of line time on frames"),
        ]


def test_render_reads_live_figures_at_scrape_time() -> None:
    part = Part()
    part.polls = 7
    text = render([part, object()]).decode()
    assert 'gateway_polls_total{device="m1"} 7.0' in text
    assert "gateway_line_utilisation 0.25" in text
    part.polls = 9
    assert 'gateway_polls_total{device="m1"} 9.0' in render([part]).decode()


async def test_http_endpoint_serves_metrics_and_404s_elsewhere() -> None:
    server = await serve_metrics([Part()], "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def get(path: str) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        body = await reader.read()
        writer.close()
        return body

    ok = await get("/metrics")
    assert ok.startswith(b"HTTP/1.1 200") and b"gateway_line_utilisation" in ok
    assert (await get("/")).startswith(b"HTTP/1.1 404")
    server.close()
    await server.wait_closed()
