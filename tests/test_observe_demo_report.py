"""The demo prints, per endpoint, what the loaders did (the blog's Server-Timing header)."""

from __future__ import annotations

from demo.report import ENDPOINTS, VARIANTS, Report, Samples, format_report


def test_the_demo_prints_the_loaders_report_of_each_endpoint() -> None:
    samples = {
        (endpoint.label, variant): Samples([12.0], [5])
        for endpoint in ENDPOINTS
        for variant in VARIANTS
    }
    first = ENDPOINTS[0].label
    samples[(first, "loaders")].server_timing = (
        'AuthorLoader;dur=1.84;desc="2 batches, 125 keys (largest 106)", '
        'TagsOfPostLoader;dur=0.91;desc="1 batch, 20 keys"'
    )
    out = format_report(Report("http://127.0.0.1:1", 1, samples, [], []))
    lines = out.splitlines()
    start = lines.index("what the loaders did, per request (the server's Server-Timing header):")
    assert lines[start + 1] == (
        f"  {first}: AuthorLoader 2 batches, 125 keys (largest 106), 1.8 ms; "
        "TagsOfPostLoader 1 batch, 20 keys, 0.9 ms"
    )
    assert lines[start + 2] == f"  {ENDPOINTS[1].label}: -"
