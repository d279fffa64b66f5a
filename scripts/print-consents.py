#!/usr/bin/env python3
"""Prints the emulator's Contact Point Consent table as a readable grid.

Usage: scripts/print-consents.py http://127.0.0.1:18080
"""
import json
import sys
import urllib.request

VALUES = {534120000: "not set", 534120001: "opted in", 534120002: "opted out"}
NAMES = {
    "10000000-0000-0000-0000-000000000003": "Commercial",
    "23db4a4d-ba9f-f011-bbd3-6045bd194648": "Newsletter",
    "5b1c9e1a-7f3d-4c2a-9e8b-2d4f6a8c0e13": "Special offers",
    "8e2f4a6c-1b3d-4e5f-a7b9-c0d1e2f3a4b5": "Events",
}


def main(base_url: str) -> None:
    with urllib.request.urlopen(f"{base_url}/_emulator/consents") as response:
        rows = json.load(response)
    print(f"{'contact point':32} {'purpose':11} {'topic':15} {'value':10} {'state':8} reason")
    for row in rows:
        purpose = NAMES.get(row.get("_msdynmkt_purposeid_value") or "", "?")
        topic = NAMES.get(row.get("_msdynmkt_topicid_value") or "", "-")
        value = VALUES.get(row.get("msdynmkt_value"), "?")
        state = "active" if row.get("statecode") == 0 else "inactive"
        print(f"{row['msdynmkt_contactpointvalue']:32} {purpose:11} {topic:15} {value:10} {state:8} {row.get('msdynmkt_reason') or ''}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:18080")
