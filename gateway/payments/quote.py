"""The quote and the credits decision (docs/PAYMENTS.md section 1), pure.

``make_quote`` says what a deploy costs, ``decide`` whether the wallet's credits cover it, and
``quote_required_error`` renders the exact 402 body when they do not.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gateway.config import ChainConfig, Settings, TokenConfig
from gateway.errors import BadRequest, PaymentRequired
from gateway.headers import PAYMENT_CHAIN, PAYMENT_TOKEN
from gateway.types import (
    micro_to_usd_number,
    micro_usd_to_token_units,
)

DEFAULT_TOKEN = "usdc"


@dataclass(frozen=True, slots=True)
class Quote:
    """What a deploy of ``months`` costs, in micro-USD and in the chosen token's base units."""

    amount_micro: int
    amount_token: int  # ceil: a quote never undercharges
    chain: ChainConfig
    token: TokenConfig
    months: int


def resolve_chain(settings: Settings, chain: str | None) -> ChainConfig:
    """The named chain (any case), the default chain when None; 400 naming the header otherwise."""
    name = chain if chain is not None and chain.strip() else settings.default_chain
    return settings.require_chain(name, field=PAYMENT_CHAIN)


def resolve_token(chain: ChainConfig, token: str | None) -> TokenConfig:
    """The named token of ``chain`` (any case); ``usdc`` (else the first enabled) when None."""
    if token is None or not token.strip():
        return chain.token(DEFAULT_TOKEN) or next(iter(chain.tokens.values()))
    found = chain.token(token.strip())
    if found is None:
        raise BadRequest(
            f"Token {token!r} is not accepted on {chain.name}; accepted: {', '.join(chain.tokens)}",
            code="unknown_token",
            field=PAYMENT_TOKEN,
        )
    return found


def make_quote(settings: Settings, *, months: int, chain: str | None, token: str | None) -> Quote:
    """``amount_usd = max(minimum_usd, price_usd_per_month * months)``, priced in the token.

    Raises ``BadRequest`` (naming ``months``, ``X-Payment-Chain`` or ``X-Payment-Token``) for a
    month count outside 1..max_months, an unknown chain or a token not accepted on it.
    """
    pricing = settings.pricing
    if (
        isinstance(months, bool)
        or not isinstance(months, int)
        or not 1 <= months <= pricing.max_months
    ):
        raise BadRequest(
            f"months must be an integer from 1 to {pricing.max_months}",
            code="invalid_months",
            field="months",
        )
    chain_config = resolve_chain(settings, chain)
    token_config = resolve_token(chain_config, token)
    amount_micro = max(pricing.minimum_micro_usd, pricing.price_micro_usd_per_month * months)
    return Quote(
        amount_micro=amount_micro,
        amount_token=micro_usd_to_token_units(amount_micro, token_config.decimals),
        chain=chain_config,
        token=token_config,
        months=months,
    )


@dataclass(frozen=True, slots=True)
class DeployOnCredits:
    """The wallet's credits cover the deploy. ``warning`` is set when the wallet opted in to
    spending credits that also fund other live projects (their runtime shrinks)."""

    warning: str | None


@dataclass(frozen=True, slots=True)
class QuoteRequired:
    """The deploy needs a payment first: rendered as the 402 quote by ``quote_required_error``.

    ``warning`` is set when the balance would cover it but other projects depend on it and the
    wallet did not opt in. ``credited_micro`` is set when a payment was just credited by this
    request and still falls short; ``quote`` then asks only the shortfall and ``price_micro``
    is the deploy's whole price.
    """

    quote: Quote
    balance_micro: int | None  # None: unknown (no wallet-signature headers)
    active_projects: int | None
    warning: str | None = None
    credited_micro: int | None = None
    price_micro: int | None = None


def _shrink_warning(active_projects: int, quote: Quote) -> str:
    plural = "project" if active_projects == 1 else "projects"
    return (
        f"This wallet has {active_projects} active {plural} funded by the same credits; spending "
        f"{micro_to_usd_number(quote.amount_micro)} USD on this deploy shortens their runtime."
    )


def _shortfall(quote: Quote, balance_micro: int) -> Quote:
    """``quote`` reduced to what the balance lacks (ceil in the token, like every quote)."""
    missing = quote.amount_micro - balance_micro
    return dataclasses.replace(
        quote,
        amount_micro=missing,
        amount_token=micro_usd_to_token_units(missing, quote.token.decimals),
    )


def decide(
    balance_micro: int,
    active_projects: int,
    quote: Quote,
    *,
    opt_in: bool,
    credited_micro: int | None = None,
) -> DeployOnCredits | QuoteRequired:
    """docs/PAYMENTS.md section 1, pure. ``credited_micro``: what a payment credited by this
    very request added (None without one).

    - balance >= amount and no active project: deploy;
    - balance >= amount, active projects and either ``opt_in`` (``X-Use-Existing-Credits:
      true``) or a payment credited by this request: deploy, with a warning that the others'
      runtime shrinks. The payment is the agent's answer to the sharing question; asking it
      again would invite a second payment;
    - balance >= amount, active projects, no opt-in and no payment: 402 quote carrying that
      warning and how to opt in;
    - otherwise: 402 quote. After a payment credited by this request it asks only the
      shortfall (amount - balance), never the whole price again, and says what was credited.
    """
    covered = balance_micro >= quote.amount_micro
    if covered and active_projects == 0:
        return DeployOnCredits(warning=None)
    if covered and opt_in:
        return DeployOnCredits(warning=_shrink_warning(active_projects, quote))
    if covered and credited_micro is not None:
        return DeployOnCredits(
            warning="Your payment is credited and deploys this project on credits shared with "
            "the other live projects. " + _shrink_warning(active_projects, quote)
        )
    if credited_micro is not None:
        return QuoteRequired(
            quote=_shortfall(quote, balance_micro),
            balance_micro=balance_micro,
            active_projects=active_projects,
            credited_micro=credited_micro,
            price_micro=quote.amount_micro,
        )
    warning = None
    if covered:
        warning = (
            _shrink_warning(active_projects, quote)
            + " Send X-Use-Existing-Credits: true to deploy on credits anyway, or pay this quote."
        )
    return QuoteRequired(
        quote=quote,
        balance_micro=balance_micro,
        active_projects=active_projects,
        warning=warning,
    )


def supported_chains(settings: Settings) -> list[dict[str, Any]]:
    """The ``/agent/chains`` list: every chain with its enabled token keys."""
    return [
        {"chain": c.name, "chain_id": c.chain_id, "tokens": list(c.tokens)}
        for c in settings.chains.values()
    ]


def quote_required_error(decision: QuoteRequired, settings: Settings) -> PaymentRequired:
    """The 402 quote of docs/PAYMENTS.md section 1 (the renderer adds
    ``Cache-Control: no-store``)."""
    quote = decision.quote
    fields: dict[str, Any] = {
        "amount_usd": micro_to_usd_number(quote.amount_micro),
        "amount_token": str(quote.amount_token),
        "current_credit_balance_usd": (
            None if decision.balance_micro is None else micro_to_usd_number(decision.balance_micro)
        ),
        "active_projects": decision.active_projects,
        "pay_to": quote.chain.pay_to,
        "payment_chain": quote.chain.name,
        "token": quote.token.key,
        "decimals": quote.token.decimals,
        "supported_chains": supported_chains(settings),
    }
    if decision.warning is not None:
        fields["warning"] = decision.warning
    if decision.credited_micro is not None:
        fields["credited_usd"] = micro_to_usd_number(decision.credited_micro)
    if decision.price_micro is not None:
        fields["price_usd"] = micro_to_usd_number(decision.price_micro)
    return PaymentRequired("Payment required", **fields).offering(
        quote.amount_micro, quote.chain.name
    )
