"""paywall/api.py: the OpenAPI description is written on first read, once, whoever reads first."""

from __future__ import annotations

import threading

from flask import Flask


def test_concurrent_first_reads_of_the_description_all_get_the_same_whole_document(app: Flask) -> None:
    # gthread workers serve several requests at once: the first readers must not document a view
    # twice (a 500) or see a half-written description.
    bodies: list[tuple[int, bytes]] = []
    start = threading.Barrier(8)

    def read() -> None:
        client = app.test_client()
        start.wait()
        resp = client.get("/openapi.json")
        bodies.append((resp.status_code, resp.get_data()))

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert [status for status, _ in bodies] == [200] * 8
    assert len({body for _, body in bodies}) == 1
    assert b'"/v1/access"' in bodies[0][1]
