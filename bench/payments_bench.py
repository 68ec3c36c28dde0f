"""Online payment timings (issue 20), in-process on one store: ``Invoice/[id]/$pay`` (with
the checkout session opened at the Stripe double over real local HTTP through the
``stripe`` library), the webhook that records the payment (signature check, conditional
create, the Invoice balanced in the same transaction), and a replay of that event.

    .venv/bin/python bench/payments_bench.py [--store sqlite|mongomock] [--bills 40]

Numbers, not pass/fail: median and 95th percentile per step, one bill at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_server.app import create_app  # noqa: E402
from fhir_server.config import Settings  # noqa: E402
from tests.conftest import BASE  # noqa: E402
from tests.doubles.fake_stripe import fake_stripe  # noqa: E402
from tests.test_payments.support import SEED, Portal, invoice  # noqa: E402


def _summary(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"median {statistics.median(ordered) * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms"


async def run(store: str, bills: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="payments-bench-"))
    storage = (
        f"sqlite:///{folder / 'fhir.sqlite3'}"
        if store == "sqlite"
        else f"mongomock://payments-bench-{os.getpid()}/fhir"
    )
    with fake_stripe() as stripe:
        settings = Settings(
            storage=storage,
            auth="smart",
            metrics="off",
            payments="stripe",
            stripe_secret_key=stripe.secret_key,
            stripe_webhook_secret=stripe.webhook_secret,
            stripe_api_base=stripe.api_base,
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE + "/") as http:
                portal = Portal(http, app, stripe)
                bill_ids = [f"bench-{n}" for n in range(bills)]
                resources = SEED + [invoice(id_, "alice", "50.00") for id_ in bill_ids]
                for resource in resources:
                    path = f"{resource['resourceType']}/{resource['id']}"
                    await http.put(path, json=resource, headers=portal.admin)
                steps: dict[str, list[float]] = {"$pay": [], "webhook": [], "replay": []}
                for id_ in bill_ids:
                    started = time.perf_counter()
                    session = await portal.checkout(id_, portal.alice)
                    steps["$pay"].append(time.perf_counter() - started)
                    event = stripe.pay(session)
                    for step in ("webhook", "replay"):
                        started = time.perf_counter()
                        response = await portal.deliver(event)
                        steps[step].append(time.perf_counter() - started)
                        assert response.status_code == 200, response.text
                for step, seconds in steps.items():
                    print(f"{store} {step}: {_summary(seconds)} ({bills} bills)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=("sqlite", "mongomock"), default="sqlite")
    parser.add_argument("--bills", type=int, default=40)
    args = parser.parse_args()
    asyncio.run(run(args.store, args.bills))


if __name__ == "__main__":
    main()
