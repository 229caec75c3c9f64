"""Sizing model: nodes, relay tree and egress for one broadcast to 10k and 100k viewers.

    .venv/bin/python -m bench.scale_model            # writes bench/results/scale_model.{md,json}
    .venv/bin/python -m bench.scale_model --viewers 10000,100000 --cores 1,8 --core-budget 0.8

Nothing here is measured anew: the model is fed by the figures the benchmarks measured, read
from their result files (so it follows them when they are re-run): the gateway's CPU per viewer
and its idle cost with a publisher (bench/results/broadcast.json), a relay's cost at the home
node and at the edge node (bench/results/relay.json), and the stream's bitrate. The
assumptions (a core's usable share, cores per node, NIC speed) are options and are printed.

Topology: the publisher's home node feeds one relay per edge node (docs/cluster.md); edges
serve viewers. Past the home's fan-out, a mid tier of nodes each takes one relay and feeds
others (cluster.max_relays makes the gateway build that tree); the model says when.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"
AUDIO_KBPS = 32  # Opus as the benchmarks send it (on top of the measured video bitrate)


def measured() -> dict[str, Any]:
    """The inputs, from the benchmarks' JSON results."""
    broadcast = json.loads((RESULTS / "broadcast.json").read_text())
    relay = json.loads((RESULTS / "relay.json").read_text())
    rows = broadcast["gateway"]["rows"]
    sustained = [
        r["server_cpu_ms_per_viewer_s"]
        for r in rows
        if r["viewers"] >= 10 and not r.get("degraded") and r.get("server_cpu_ms_per_viewer_s")
    ]
    idle = broadcast["gateway"]["baseline"]  # N = 0: the publisher alone
    summary = relay["summary"]
    return {
        "viewer_ms_per_s": statistics.median(sustained),
        "idle_with_publisher_ms_per_s": idle["server_cpu_ms_per_s"],
        "video_kbps": idle["publisher_video_kbps"],
        "relay_out_ms_per_s": summary["relay_leg_at_a_mean_ms_per_s"],
        "relay_in_ms_per_s": summary["relayed_b_fit"]["fixed_ms_per_s"],
        "edge_viewer_ms_per_s": summary["relayed_b_fit"]["per_viewer_ms_per_s"],
        "sources": {
            "broadcast": f"{broadcast['command']} ({broadcast['date']}, git {broadcast['git']['head']})",
            "relay": f"{relay['command']} ({relay['date']}, git {relay['git']['head']})",
        },
    }


def size(
    viewers: int, cores: int, m: dict[str, Any], budget: float, nic_gbps: float
) -> dict[str, Any]:
    """One deployment: per-node capacities, nodes per tier, egress."""
    cpu = 1000.0 * budget * cores  # CPU-ms per second a node may spend
    kbps = m["video_kbps"] + AUDIO_KBPS
    nic_viewers = int(nic_gbps * 1e6 / kbps)
    # The home node: its publisher, then one relay per edge (no viewers of its own).
    home_fanout = int((cpu - m["idle_with_publisher_ms_per_s"]) / m["relay_out_ms_per_s"])
    home_fanout = min(home_fanout, nic_viewers)
    # An edge: one relay in, then viewers; whichever of CPU and NIC runs out first.
    by_cpu = int((cpu - m["relay_in_ms_per_s"]) / m["edge_viewer_ms_per_s"])
    per_edge = min(by_cpu, nic_viewers)
    # A mid-tier node (relay in, relays out): what a second level of relays would take.
    mid_fanout = min(int((cpu - m["relay_in_ms_per_s"]) / m["relay_out_ms_per_s"]), nic_viewers)
    edges = math.ceil(viewers / per_edge)
    if edges <= home_fanout:
        levels, mids = 1, 0
    else:
        levels, mids = 2, math.ceil(edges / mid_fanout)
        if mids > home_fanout:
            levels = 3  # and beyond: reported, not sized further
    nodes = 1 + mids + edges
    egress_gbps = (viewers + edges + mids) * kbps / 1e6
    return {
        "viewers": viewers,
        "cores_per_node": cores,
        "viewers_per_edge": per_edge,
        "edge_limited_by": "cpu" if by_cpu <= nic_viewers else "nic",
        "home_fanout": home_fanout,
        "mid_fanout": mid_fanout,
        "relay_levels": levels,
        "edges": edges,
        "mid_nodes": mids,
        "nodes": nodes,
        "egress_gbps": round(egress_gbps, 1),
        "egress_per_edge_mbps": round(per_edge * kbps / 1000, 1),
        "one_level_max_viewers": home_fanout * per_edge,
        # What the gateway does today: one level of relays, one process (core) per node.
        "missing": [
            *(["more than two levels of relays (unsized)"] if levels > 2 else []),
            *(["worker processes"] if cores > 1 else []),
        ],
    }


def render(result: dict[str, Any]) -> str:
    m, a = result["inputs"], result["assumptions"]
    lines = [
        "# Scale model: one broadcast to many viewers (bench/scale_model.py)",
        "",
        f"- Command: `{result['command']}`; date {result['date']}.",
        f"- Fed by: broadcast `{m['sources']['broadcast']}`; relay `{m['sources']['relay']}`.",
        f"- Measured inputs: {m['viewer_ms_per_s']:.2f} CPU-ms per viewer-second at a node "
        f"(median over sustained N >= 10), {m['idle_with_publisher_ms_per_s']:.0f} CPU-ms/s for "
        f"a node with its publisher and no viewer, a relay costs "
        f"{m['relay_out_ms_per_s']:.1f} CPU-ms/s at the home node and "
        f"{m['relay_in_ms_per_s']:.1f} CPU-ms/s to receive at an edge, whose viewers then cost "
        f"{m['edge_viewer_ms_per_s']:.2f} each; the stream is {m['video_kbps']:.0f} kbps of "
        f"video + {AUDIO_KBPS} of audio.",
        f"- Assumptions: a node spends {a['core_budget']:.0%} of each core (headroom for "
        f"signaling, bursts, keyframes); {a['nic_gbps']:g} Gbps NIC per node; cores per node "
        "as in each row. Today one gateway process is one core, so rows with more cores assume "
        "worker processes (issue 12 item 2, not built) scaling linearly, which mediasoup's "
        "workers come close to.",
        "",
        "| viewers | cores/node | viewers per edge (limit) | home fan-out | relay levels | edges | mid nodes | nodes | egress Gbps | one-level max | built today |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['viewers']:,} | {row['cores_per_node']} | {row['viewers_per_edge']} "
            f"({row['edge_limited_by']}) | {row['home_fanout']} | {row['relay_levels']} | "
            f"{row['edges']} | {row['mid_nodes']} | {row['nodes']} | {row['egress_gbps']} | "
            f"{row['one_level_max_viewers']:,} | {'yes' if not row['missing'] else 'needs ' + ' and '.join(row['missing'])} |"
        )
    lines += [
        "",
        "How to read it: *home fan-out* is how many edge relays the publisher's node can feed;",
        "*one-level max* = home fan-out x viewers per edge, the largest broadcast one level of",
        "relays serves. Past it a mid tier (nodes that take one relay and feed others, sized",
        "here as feeding relays only) is needed: with `cluster.max_relays` set to the home's",
        "fan-out, a node that needs the stream pulls it from another node's copy once the home",
        "is at its cap (tested with three nodes). Egress counts every viewer's and relay's stream.",
        "",
        "Beside the documented figures of others (their words paraphrased, their setups",
        "differ: read the sources): mediasoup says one worker (one core, C++) typically",
        "handles over ~500 consumers, i.e. ~250 viewers of an audio+video broadcast per core",
        "(mediasoup.org/documentation/v3/scalability, as quoted in livekit/livekit#726), and",
        "pipes producers between workers and hosts (pipeToRouter) for larger rooms. LiveKit's",
        "self-hosting benchmark says each room must fit within a single node",
        "(docs.livekit.io, Benchmarks), so one room's audience is one node's capacity. Here one",
        "core serves ~" + f"{int(1000 * a['core_budget'] / m['viewer_ms_per_s'])} viewers at the "
        "same headroom, and a broadcast spans nodes through relays.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--viewers", default="10000,100000")
    parser.add_argument("--cores", default="1,8,16", help="cores per node, comma-separated")
    parser.add_argument("--core-budget", type=float, default=0.8)
    parser.add_argument("--nic-gbps", type=float, default=10.0)
    parser.add_argument("--json", type=Path, default=RESULTS / "scale_model.json")
    parser.add_argument("--md", type=Path, default=RESULTS / "scale_model.md")
    args = parser.parse_args()
    inputs = measured()
    rows = [
        size(int(v), int(c), inputs, args.core_budget, args.nic_gbps)
        for v in args.viewers.split(",")
        for c in args.cores.split(",")
    ]
    result = {
        "command": "python -m bench.scale_model "
        f"--viewers {args.viewers} --cores {args.cores} --core-budget {args.core_budget} "
        f"--nic-gbps {args.nic_gbps}",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "inputs": inputs,
        "assumptions": {"core_budget": args.core_budget, "nic_gbps": args.nic_gbps},
        "rows": rows,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    args.md.write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
