"""``python -m deploy --replicas N --port P [--run-dir DIR]``: N Latent Lab replicas behind HAProxy.

Starts the replicas and the proxy, prints the address, and keeps them running until Ctrl-C or
SIGTERM, then stops everything. A replica that dies is started again on its port (its students are
served by the others meanwhile; ``--no-restart`` turns this off). See docs/deploying.md.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time

from deploy import BALANCES, MAX_REPLICAS, WARM_CHOICES, DeployError, default_run_dir, start


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m deploy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--replicas", type=int, default=2, help=f"Streamlit servers to start, 1 to {MAX_REPLICAS} "
                    "(default 2; about one per core or two is a good start)")
    ap.add_argument("--port", type=int, default=8501, help="the port students connect to (default 8501)")
    ap.add_argument("--bind", default="0.0.0.0", help="the address HAProxy listens on (default 0.0.0.0: every "
                    "interface, for a class; 127.0.0.1 for this machine only)")
    ap.add_argument("--run-dir", default=None, help=f"the run directory the replicas share (default: "
                    f"LATENT_LAB_RUN_DIR, else {default_run_dir()})")
    ap.add_argument("--balance", choices=BALANCES, default="leastconn",
                    help="how a new browser is given a replica (default leastconn: the one with the fewest open sessions)")
    ap.add_argument("--warm", choices=WARM_CHOICES, default="all",
                    help="before serving, open every page (all, the default), the home page or none once on each "
                    "replica: a first visit loads the models every session shares")
    ap.add_argument("--pin-cores", action="store_true", help="give each replica its own share of the cores")
    ap.add_argument("--no-restart", action="store_true", help="do not start a replica again when it dies")
    ap.add_argument("--work-dir", default=None, help="keep the config, logs and stats socket here "
                    "(default: a temporary folder, removed at exit)")
    return ap.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    stopping = []

    def on_signal(signum, frame):
        stopping.append(signum)
        raise KeyboardInterrupt

    # Ctrl-C, SIGTERM and a closed terminal all stop everything cleanly (SIGINT too when the shell
    # that started this one ignores it, as a non-interactive shell does for a background job).
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    print(f"Starting {a.replicas} replica(s) and HAProxy on {a.bind}:{a.port} ...", flush=True)
    try:
        dep = start(a.replicas, a.port, a.run_dir, bind=a.bind, balance=a.balance, pin_cores=a.pin_cores,
                    work_dir=a.work_dir, warm_pages=a.warm, log=lambda m: print(m, flush=True))
    except DeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted while starting; stopped", file=sys.stderr)
        return 130
    try:
        host = "<this machine's address>" if a.bind in ("0.0.0.0", "") else a.bind
        print(f"Latent Lab is served at http://{host}:{a.port}  ({a.replicas} replica(s): "
              + ", ".join(f"{r.name} on 127.0.0.1:{r.port}" for r in dep.replicas) + ")")
        print(f"runs are kept in {dep.run_dir}; config and logs in {dep.work_dir}")
        print("Press Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(1.0)
            if dep.haproxy.poll() is not None:
                print(f"error: HAProxy exited with code {dep.haproxy.returncode} (log: {dep.work_dir / 'haproxy.log'})",
                      file=sys.stderr)
                return 1
            for i, r in enumerate(dep.replicas):
                if not r.alive() and not a.no_restart:
                    print(f"replica {r.name} exited with code {r.proc.returncode}; starting it again "
                          f"(log: {r.log})", flush=True)
                    try:
                        dep.restart_replica(i)
                    except DeployError as exc:
                        print(f"could not restart {r.name}: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("stopping ...", flush=True)
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean stop short
        dep.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
