#!/usr/bin/env python3
"""Writer and checker of cli.service_crash (tests/cli/service_crash.sh); stdlib only.

  crash_writer.py write  URL TENANT TOKEN_FILE CA ROUND OUT_DIR [THREADS]
      Posts batches of 50 records (round, batch, seq 0..49; one time window
      per round; every 8th batch is 80 KB, more than one block) on THREADS keep-alive connections until the server goes away
      (or 20 s pass). Appends "ROUND BATCH" to OUT_DIR/sent before each post,
      to OUT_DIR/acked after a 2xx, and "ROUND BATCH STATUS BODY" to
      OUT_DIR/refused for any other HTTP answer (which should never happen).
  crash_writer.py verify URL TENANT TOKEN_FILE CA OUT_DIR [ROUND]
      Reads the tenant's records (limit 10000 per page, following
      X-Next-Cursor; only the round's time window when ROUND is given) and
      checks: every page answers 200; every acknowledged batch is there with
      each seq exactly once; every batch that is there is complete (all or
      nothing), was sent, and has no duplicate. Exit 0 when all hold.
"""
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse

BATCH = 50
T0 = 1700000000000  # ms
WINDOW = 10_000_000_000  # ms of record time per round


def window(rnd):
    return T0 + rnd * WINDOW, T0 + (rnd + 1) * WINDOW


def connect(url, ca):
    u = urllib.parse.urlsplit(url)
    ctx = ssl.create_default_context(cafile=ca)
    return http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=15)


def write(url, tenant, token, ca, rnd, out, threads):
    lock = threading.Lock()
    state = {"next": 0}
    files = {n: open(os.path.join(out, n), "a", buffering=1) for n in ("sent", "acked", "refused")}
    start = window(rnd)[0]
    deadline = time.monotonic() + 20

    def worker():
        conn = None
        while time.monotonic() < deadline:
            with lock:
                b = state["next"]
                state["next"] += 1
                files["sent"].write(f"{rnd} {b}\n")
            body = "".join(
                json.dumps({"time": start + b * BATCH + i, "user": "crash", "app": "writer",
                            "action": "post", "ip": "10.9.0.1", "round": rnd, "batch": b,
                            "seq": i, "pad": "x" * (1500 if b % 8 == 7 else 40)},
                           separators=(",", ":")) + "\n"
                for i in range(BATCH))
            if conn is None:
                try:
                    conn = connect(url, ca)
                    conn.connect()
                except OSError:
                    return  # the server is gone
            try:
                conn.request("POST", f"/v1/tenants/{tenant}/records", body=body.encode(),
                             headers={"Authorization": "Bearer " + token,
                                      "Content-Type": "application/x-ndjson"})
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                # unacknowledged; a new connection (and a new batch) tells whether the
                # server is gone or only closed this connection
                conn.close()
                conn = None
                continue
            with lock:
                if 200 <= resp.status < 300:
                    files["acked"].write(f"{rnd} {b}\n")
                else:
                    files["refused"].write(f"{rnd} {b} {resp.status} {data[:200]!r}\n")
                    return

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    for f in files.values():
        f.close()
    return 0


def read_pairs(path):
    if not os.path.exists(path):
        return set()
    with open(path) as f:
        return {tuple(int(x) for x in line.split()[:2]) for line in f if line.strip()}


def verify(url, tenant, token, ca, out, rnd):
    acked = read_pairs(os.path.join(out, "acked"))
    sent = read_pairs(os.path.join(out, "sent"))
    if rnd is not None:
        acked = {p for p in acked if p[0] == rnd}
        sent = {p for p in sent if p[0] == rnd}
    params = {"limit": "10000"}
    if rnd is not None:
        params["from"], params["to"] = (str(x) for x in window(rnd))
    conn = connect(url, ca)
    seen = {}  # (round, batch) -> list of seqs
    cursor, pages, total = None, 0, 0
    while True:
        q = dict(params)
        if cursor:
            q["cursor"] = cursor
        conn.request("GET", f"/v1/tenants/{tenant}/records?" + urllib.parse.urlencode(q),
                      headers={"Authorization": "Bearer " + token})
        resp = conn.getresponse()
        data = resp.read()
        pages += 1
        if resp.status != 200:
            print(f"query page {pages}: HTTP {resp.status}: {data[:300]!r}")
            return 1
        for line in data.decode().splitlines():
            r = json.loads(line)
            seen.setdefault((r["round"], r["batch"]), []).append(r["seq"])
            total += 1
        cursor = resp.getheader("X-Next-Cursor")
        if not cursor:
            break
        if pages > 10000:
            print("paging does not end")
            return 1
    bad = []
    for p in sorted(acked):
        if sorted(seen.get(p, [])) != list(range(BATCH)):
            bad.append(f"acknowledged batch {p} holds seqs {sorted(seen.get(p, []))}")
    for p, seqs in sorted(seen.items()):
        if sorted(seqs) != list(range(BATCH)):
            bad.append(f"batch {p} is partial or duplicated: {len(seqs)} records")
        if p not in sent:
            bad.append(f"batch {p} was never sent")
    extra = len(set(seen) - acked)
    scope = f"round {rnd}" if rnd is not None else "all rounds"
    print(f"{scope}: {total} records in {pages} pages; {len(acked)} acknowledged batches, "
          f"{len(seen)} present ({extra} unacknowledged), {len(sent)} sent")
    for b in bad[:20]:
        print("  " + b)
    return 1 if bad else 0


def main(argv):
    if len(argv) < 7 or argv[1] not in ("write", "verify"):
        print(__doc__, file=sys.stderr)
        return 2
    url, tenant, token_file, ca = argv[2:6]
    with open(token_file) as f:
        token = f.read().strip()
    if argv[1] == "write":
        return write(url, tenant, token, ca, int(argv[6]), argv[7],
                     int(argv[8]) if len(argv) > 8 else 3)
    return verify(url, tenant, token, ca, argv[6], int(argv[7]) if len(argv) > 7 else None)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
