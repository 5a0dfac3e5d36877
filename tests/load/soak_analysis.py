"""The soak's verdict (tests/load/soak.py), kept apart from the traffic so
that it can be tested on made-up series (tests/load/test_soak_analysis.py).

Input: the server's samples, each {"t": seconds since the traffic began,
"rss_kib", "fds", "threads"}, taken every few seconds, and the run's
length. Only the samples after the warm-up are judged: the first
max(warmup_frac x length, min_warmup_s) seconds, while caches, connection
pools, the allocator's arenas and FerretDB's statement caches fill, are
shown but not judged.

RSS. A leak is a trend that keeps going; allocator noise is a wobble that
does not. Two measures, both of which must exceed their bound to fail:

  - slope: the Theil-Sen estimate (the median of the slopes between every
    pair of samples) over the judged samples, in MiB per hour. A median of
    slopes ignores a few outliers (a spike when a burst of requests held
    buffers, a drop when the allocator gave memory back), which a
    least-squares fit does not.
  - rise: the median RSS of the last quarter of the judged samples minus
    that of their first quarter, in MiB. Medians again, so one sample
    does not decide.

The slope alone would extrapolate noise on a short run (1 MiB of jitter
over two minutes is 30 MiB an hour); the rise alone would fail a long run
whose allocator settled a little higher once. Together: memory that went
up by more than the noise floor and is still going up at more than the
hourly bound. A leak of L MiB/h fails once L exceeds the bound and the run
is long enough for the rise to pass the floor (about floor / L hours of
judged time between the quarters' middles).

Open fds and threads. They must not grow: a leaked descriptor or thread
never comes back, so the median of the last quarter of the judged samples
may exceed that of the first quarter by at most a small slack (sockets of
requests in flight when a sample is taken come and go).
"""

import math
import statistics

# Defaults (soak.py takes them from SOAK_* variables); README "Soak" says
# why these numbers.
WARMUP_FRAC = 0.2
MIN_WARMUP_S = 60.0
RSS_SLOPE_MIB_H = 16.0
RSS_RISE_MIB = 4.0
FD_SLACK = 4
THREAD_SLACK = 2
MIN_JUDGED = 6


def theil_sen(points):
    """The median of the slopes between every pair of (x, y) points with
    different x; None with fewer than two such points."""
    slopes = []
    for i in range(len(points)):
        x1, y1 = points[i]
        for j in range(i + 1, len(points)):
            x2, y2 = points[j]
            if x2 != x1:
                slopes.append((y2 - y1) / (x2 - x1))
    return statistics.median(slopes) if slopes else None


def quarters(values):
    """The medians of the first and the last quarter of values (at least
    one value each)."""
    k = max(1, len(values) // 4)
    return statistics.median(values[:k]), statistics.median(values[-k:])


def warmup_seconds(duration_s, warmup_frac=WARMUP_FRAC, min_warmup_s=MIN_WARMUP_S):
    return max(warmup_frac * duration_s, min_warmup_s)


def judge_resources(samples, duration_s, *, warmup_frac=WARMUP_FRAC, min_warmup_s=MIN_WARMUP_S,
                    rss_slope_mib_h=RSS_SLOPE_MIB_H, rss_rise_mib=RSS_RISE_MIB, fd_slack=FD_SLACK,
                    thread_slack=THREAD_SLACK, min_judged=MIN_JUDGED):
    """The RSS, fd and thread checks: a list of {"name", "ok", "detail"}
    plus the figures each was judged on."""
    warm = warmup_seconds(duration_s, warmup_frac, min_warmup_s)
    judged = sorted((s for s in samples if s["t"] >= warm), key=lambda s: s["t"])
    if len(judged) < min_judged:
        return [{"name": "samples", "ok": False,
                 "detail": f"{len(judged)} samples after the {warm:.0f} s warm-up, "
                           f"at least {min_judged} are needed to judge growth"}]
    checks = []

    rss = [(s["t"], s["rss_kib"] / 1024.0) for s in judged]
    slope_s = theil_sen(rss)
    slope_h = slope_s * 3600.0 if slope_s is not None else 0.0
    first, last = quarters([v for _, v in rss])
    rise = last - first
    leaking = slope_h > rss_slope_mib_h and rise > rss_rise_mib
    checks.append({
        "name": "rss", "ok": not leaking,
        "slope_mib_per_hour": round(slope_h, 2), "rise_mib": round(rise, 2),
        "detail": f"slope {slope_h:+.1f} MiB/h (bound {rss_slope_mib_h:g}), rise {rise:+.2f} MiB "
                  f"between the first and last quarter after warm-up (floor {rss_rise_mib:g})"
                  + ("" if not leaking else ": RSS keeps growing")})

    for key, name, slack in (("fds", "fds", fd_slack), ("threads", "threads", thread_slack)):
        first, last = quarters([s[key] for s in judged])
        grew = last - first
        checks.append({
            "name": name, "ok": grew <= slack, "growth": grew,
            "detail": f"median {first:g} -> {last:g} from the first to the last quarter after "
                      f"warm-up (slack {slack})" + ("" if grew <= slack else f": {name} grow")})
    return checks


def judge_traffic(counts):
    """Checks on what the traffic saw; counts has "requests", "errors",
    "ws_missing", "ws_duplicates", "ws_disorder", "ws_drops",
    "hook_missing", "hook_duplicates", "expected_events", "server_alive"."""
    checks = []

    def check(name, ok, detail):
        checks.append({"name": name, "ok": bool(ok), "detail": detail})

    check("server", counts.get("server_alive", False), "the server process stayed up"
          if counts.get("server_alive") else "the server process died")
    check("requests", counts.get("requests", 0) > 0, f"{counts.get('requests', 0)} requests made")
    check("errors", counts.get("errors", 0) == 0,
          f"{counts.get('errors', 0)} requests answered other than expected (5xx, an unexpected 4xx, "
          "or no answer)")
    check("events", counts.get("expected_events", 0) > 0,
          f"{counts.get('expected_events', 0)} events expected on every WebSocket")
    ws_bad = sum(counts.get(k, 0) for k in ("ws_missing", "ws_duplicates", "ws_disorder", "ws_drops"))
    check("websocket", ws_bad == 0,
          f"{counts.get('ws_missing', 0)} events missing (gaps), {counts.get('ws_duplicates', 0)} "
          f"duplicated, {counts.get('ws_disorder', 0)} out of order, {counts.get('ws_drops', 0)} "
          "connections dropped or failed")
    # Deliveries are at least once (README "Task queue and webhooks"), so a
    # webhook-id taken twice is shown, not failed.
    check("webhooks", counts.get("hook_missing", 0) == 0,
          f"{counts.get('hook_missing', 0)} deliveries missing ({counts.get('hook_duplicates', 0)} "
          "delivered again under a webhook-id already taken)")
    return checks


def percentile(values, p):
    """The nearest-rank percentile p (0..100) of values; None when empty."""
    if not values:
        return None
    s = sorted(values)
    rank = max(1, math.ceil(p / 100.0 * len(s)))
    return s[rank - 1]
