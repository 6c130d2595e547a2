"""Discovery: ``GET /llms.txt`` and OpenAPI's ``x-payment-info`` / ``x-service-info`` are built
from the running configuration, so a price change in config shows in both."""

from __future__ import annotations

import dataclasses

from tests.support import SettingsFactory, running_gateway

PAID = [
    ("/agent/deploy", "post"),
    ("/agent/projects/{projectId}/deploy", "post"),
    ("/agent/credits/topup", "post"),
]


async def test_llms_txt_and_payment_info_follow_the_configured_price(
    make_settings: SettingsFactory,
) -> None:
    base = make_settings()
    assert base.pricing.price_micro_usd_per_month == 500_000  # config/local.toml
    pricier = base.with_overrides(
        pricing=dataclasses.replace(
            base.pricing, price_micro_usd_per_month=1_250_000, minimum_micro_usd=2_000_000
        )
    )
    for settings, price, minimum in ((base, "0.50", "0.50"), (pricier, "1.25", "2.00")):
        async with running_gateway(settings) as gw:
            guide = await gw.client.get("/llms.txt")
            assert guide.status_code == 200
            assert guide.headers["content-type"].startswith("text/markdown")
            assert f"{price} USD per month of runtime, at least {minimum} USD" in guide.text
            assert settings.chains["arbitrum"].pay_to in guide.text
            assert "X-Payment-Tx" in guide.text and "X-Signature" in guide.text

            document = (await gw.client.get("/openapi.json")).json()
            service = document["x-service-info"]
            assert service["payment"]["price_usd_per_month"] == price
            assert service["guide"] == "/llms.txt"
            for path, method in PAID:
                info = document["paths"][path][method]["x-payment-info"]
                assert info["price_usd_per_month"] == price
                assert info["minimum_usd"] == minimum
                assert info["max_months"] == settings.pricing.max_months
                chains = {c["chain"]: c for c in info["chains"]}
                assert set(chains) == set(settings.chains)
                usdc = next(t for t in chains["base"]["tokens"] if t["token"] == "usdc")
                assert usdc["address"] == settings.chains["base"].tokens["usdc"].address
                assert info["methods"][0]["header"] == "X-Payment-Tx"
            assert "x-payment-info" not in document["paths"]["/agent/projects"]["get"]


async def test_the_gasless_ways_to_pay_are_described_only_where_a_settler_is_configured(
    make_settings: SettingsFactory,
) -> None:
    from devstack.anvil import ANVIL_ACCOUNTS

    plain = make_settings()
    settling = plain.with_overrides(settler_key=ANVIL_ACCOUNTS[7][1])
    for settings, gasless in ((plain, False), (settling, True)):
        async with running_gateway(settings) as gw:
            guide = (await gw.client.get("/llms.txt")).text
            document = (await gw.client.get("/openapi.json")).json()
        methods = [m["method"] for m in document["x-service-info"]["payment"]["methods"]]
        assert methods == (["erc20-transfer", "mpp", "x402"] if gasless else ["erc20-transfer"])
        assert ("PAYMENT-SIGNATURE" in guide) is gasless
        assert ("Pay without gas" in guide) is gasless
