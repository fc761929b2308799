"""The side under test of ``bench_sniffer_lossfree.py``: the sniffer as its main wires it, and the
mapper's stand-in it reports to. Each runs as a process of its own inside the bench's receiving
network namespace (``ip netns exec``), started by the bench as ``python bench/lossfree_sniffer.py
sniffer --iface <veth>`` or ``... sink``; the bench reads the sniffer's figures from its ``/metrics``
(``HEALTH_PORT``) and stops it with SIGTERM. ``--profile-to FILE`` runs the capture thread under
cProfile and writes its statistics there on exit; :func:`print_profile` prints them.
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mappersink import sink_server  # noqa: E402 - bench/: run as `python bench/<file>.py`

from agent.lifecycle import serve_until_signalled  # noqa: E402
from agent.settings import SnifferSettings, load  # noqa: E402
from agent.sniffer.__main__ import reporter_from_settings  # noqa: E402
from agent.sniffer.capture import LibpcapSource, PacketCapture  # noqa: E402
from agent.sniffer.metrics import SnifferMetrics  # noqa: E402

SNIFFER_CPU, SINK_CPU = 0, 1  # the sink shares the sender's core: the sniffer's is the one measured
HEALTH_PORT, SINK_PORT = 19091, 19090
# The processes measured (the sniffer, tcpdump) and the sender run at nice -20: on this shared
# machine the other work on their cores then barely takes a share, for either tool alike.
NICE = -20


def run_sink() -> None:
    os.sched_setaffinity(0, {SINK_CPU})
    sink_server(SINK_PORT).serve_forever()


def run_sniffer(iface: str, profile_to: str) -> int:
    """The sniffer as its main wires it (less the /proc scan), on ``iface``, pinned to one core."""
    os.sched_setaffinity(0, {SNIFFER_CPU})
    os.setpriority(os.PRIO_PROCESS, 0, NICE)  # Linux: this thread, and the threads it starts
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    flags = [
        "--mapper-url",
        f"http://127.0.0.1:{SINK_PORT}/query",
        "--health-address",
        f"127.0.0.1:{HEALTH_PORT}",
    ]
    settings = load(SnifferSettings, flags, {}, prog="bench-sniffer")
    metrics = SnifferMetrics()
    stopping = threading.Event()
    collector, reporter, status = reporter_from_settings(settings, metrics, stopping)
    source = LibpcapSource(iface)  # the sniffer's filter and buffer size (its defaults)
    profiler = cProfile.Profile() if profile_to else None

    class Capture(PacketCapture):
        def run(self) -> None:
            if profiler is None:
                super().run()
            else:
                profiler.runcall(super().run)

    capture = Capture(source, collector.add, metrics)
    code = serve_until_signalled(
        "bench-sniffer", settings.health_address, metrics, [capture, status], reporter, stopping, capture.stop
    )
    if profiler is not None:
        profiler.dump_stats(profile_to)
    return code


def print_profile(path: str) -> None:
    stats = pstats.Stats(path)
    total = stats.total_tt  # type: ignore[attr-defined]
    print(f"profile of the sniffer's capture thread ({total:.2f}s of calls), top by own time:")
    stats.sort_stats("tottime")
    for func in stats.fcn_list[:14]:  # type: ignore[attr-defined]
        _, nc, tt, ct, _ = stats.stats[func]  # type: ignore[attr-defined]
        where = f"{Path(func[0]).name}:{func[1]}({func[2]})"
        print(f"  {tt:6.2f}s own {100 * tt / total:5.1f}%  {ct:6.2f}s cum  {nc:>9d} calls  {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=("sniffer", "sink"))
    parser.add_argument("--iface", default="any", help="the interface to capture on")
    parser.add_argument("--profile-to", default="", help="write the capture thread's cProfile here")
    args = parser.parse_args()
    if args.role == "sink":
        run_sink()
        return 0
    return run_sniffer(args.iface, args.profile_to)


if __name__ == "__main__":
    sys.exit(main())
