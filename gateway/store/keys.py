"""Every Redis key the gateway writes, under one prefix. No other module spells a key.

Addresses in keys are lowercase hex; tx hashes are the canonical lowercase form.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeySpace:
    prefix: str = "gw:"

    # --- auth and abuse -------------------------------------------------------------------
    def nonce(self, wallet: str, nonce: str) -> str:
        """Set once per (wallet, nonce) with a TTL longer than the auth window."""
        return f"{self.prefix}nonce:{wallet.lower()}:{nonce}"

    def rate(self, client_ip: str, wallet_header: str) -> str:
        """GCRA state (theoretical arrival time, ms) for one (IP, X-Wallet-Address)."""
        return f"{self.prefix}rate:{client_ip}:{wallet_header.lower()}"

    def failed_auth(self, client_ip: str) -> str:
        """GCRA state of one client IP's budget of failed authentications (any wallet)."""
        return f"{self.prefix}authfail:{client_ip}"

    def no_code(self, chain_id: int, address: str) -> str:
        """Short-lived mark: ``address`` had no code on the chain (EIP-1271 impossible).
        A fact about the chain, never about a signature."""
        return f"{self.prefix}nocode:{chain_id}:{address.lower()}"

    # --- payments ------------------------------------------------------------------------
    def claim(self, chain_id: int, tx_hash: str) -> str:
        """Permanent claim of a payment tx: ``pending:<token>`` while verifying, ``used`` after."""
        return f"{self.prefix}claim:{chain_id}:{tx_hash}"

    def payment(self, chain_id: int, tx_hash: str) -> str:
        """Hash: the recorded verification of a credited payment."""
        return f"{self.prefix}payment:{chain_id}:{tx_hash}"

    def wallet_payments(self, wallet: str) -> str:
        """List of ``chain_id:tx`` credited to a wallet, newest first."""
        return f"{self.prefix}wallet:{wallet.lower()}:payments"

    def recheck_queue(self) -> str:
        """Sorted set of ``chain_id:tx`` credited before finality; score = block number."""
        return f"{self.prefix}recheck"

    def settlement(self, chain_id: int, token: str, payer: str, nonce_hex: str) -> str:
        """Hash, permanent: one EIP-3009 authorization's settlement (claim holder, the signed
        tx and its hash before it is sent, the tx that credits it, its state)."""
        return f"{self.prefix}settle:{chain_id}:{token.lower()}:{payer.lower()}:{nonce_hex.lower()}"

    def challenge(self, challenge_id: str) -> str:
        """An MPP challenge that was used: the payer who used it (expires after the challenge)."""
        return f"{self.prefix}challenge:{challenge_id}"

    def settlements_in_flight(self) -> str:
        """Sorted set of settlement keys whose signed tx is not finished; score = recorded ms
        (the sweeper re-sends those that stay unmined)."""
        return f"{self.prefix}settle:in-flight"

    def settler_nonce(self, chain_id: int, settler: str) -> str:
        """The next account nonce the settler may sign with on a chain (shared by processes)."""
        return f"{self.prefix}settler:{chain_id}:{settler.lower()}:nonce"

    # --- ledger --------------------------------------------------------------------------
    def balance(self, wallet: str) -> str:
        """Integer micro-USD balance."""
        return f"{self.prefix}balance:{wallet.lower()}"

    def ledger(self, wallet: str) -> str:
        """Append-only list of JSON ledger entries (RPUSH), oldest first."""
        return f"{self.prefix}ledger:{wallet.lower()}"

    def ledger_seq(self) -> str:
        """Global counter numbering ledger entries."""
        return f"{self.prefix}ledger:seq"

    def wallets(self) -> str:
        """Set of every wallet that has a ledger."""
        return f"{self.prefix}wallets"

    # --- projects, ownership, metering ---------------------------------------------------
    def project(self, project_id: str) -> str:
        """Hash: wallet, uniqueName, displayName, status, createdAt, last deployment, ..."""
        return f"{self.prefix}project:{project_id}"

    def wallet_projects(self, wallet: str) -> str:
        """Set of project ids owned by a wallet."""
        return f"{self.prefix}wallet:{wallet.lower()}:projects"

    def active_projects(self) -> str:
        """Set of project ids that burn credits."""
        return f"{self.prefix}projects:active"

    def metered_hour(self, project_id: str) -> str:
        """Last hour index (Unix hours) burned for a project."""
        return f"{self.prefix}metered:{project_id}"

    def metering_lease(self) -> str:
        """Leader lease of the metering loop (holder token, PX expiry)."""
        return f"{self.prefix}metering:lease"

    def recheck_lease(self) -> str:
        """Leader lease of the payment re-check loop (holder token, PX expiry)."""
        return f"{self.prefix}recheck:lease"

    # --- deploy flow ---------------------------------------------------------------------
    def deploy_attempt(self, wallet: str, unique_name: str) -> str:
        """Hash: durable progress of one wallet's deploy of one name (half-made projects)."""
        return f"{self.prefix}deploy:{wallet.lower()}:{unique_name.lower()}"

    def deploy_lock(self, wallet: str, unique_name: str) -> str:
        return f"{self.prefix}deploylock:{wallet.lower()}:{unique_name.lower()}"

    def idempotency(self, wallet: str, key: str) -> str:
        """The first answer given for an Idempotency-Key, 24 h."""
        return f"{self.prefix}idem:{wallet.lower()}:{key}"

    def name_owner(self, unique_name: str) -> str:
        """Wallet that holds a uniqueName through this gateway."""
        return f"{self.prefix}name:{unique_name.lower()}"

    # --- reconciliation and ledger compaction (docs/PAYMENTS.md sections 8-9) -------------
    # Kept in their own section (appended last) so the hash-tag work on the keys above can
    # move them without touching these. None of these is touched by a script together with a
    # wallet's money keys, except ``ledger`` itself (compaction).
    def reconcile_lease(self) -> str:
        """Leader lease of the reconciler loop (holder token, PX expiry)."""
        return f"{self.prefix}reconcile:lease"

    def reconcile_checkpoints(self) -> str:
        """Hash ``<chain_id>:<token>`` -> the last block whose Transfer logs were scanned."""
        return f"{self.prefix}reconcile:checkpoints"

    def reconcile_found(self) -> str:
        """Hash ``<chain_id>:<tx>:<sender>`` -> JSON of an unclaimed transfer still to settle
        (chain, token, block, first seen); removed once credited or decided."""
        return f"{self.prefix}reconcile:found"

    def reconcile_audited(self) -> str:
        """Hash wallet -> how many of its oldest credited payments were checked on-chain."""
        return f"{self.prefix}reconcile:audited"

    def reconcile_summary(self) -> str:
        """JSON of what the last reconciliation pass found and did (operator CLI)."""
        return f"{self.prefix}reconcile:last"

    def reconcile_action(self, action: str, ref: str) -> str:
        """Once-only guard of one reconciler ledger entry (an adoption)."""
        return f"{self.prefix}reconcile:done:{action}:{ref}"
